-- fct_orders sums fct_order_lines per order: the totals must agree exactly,
-- and every line must belong to an order counted in fct_orders.
-- Returns a row (fails) when they differ.

with

orders as (

    select * from {{ ref('fct_orders') }}

),

order_lines as (

    select * from {{ ref('fct_order_lines') }}

),

order_totals as (

    select
        sum(line_count) as line_count,
        sum(net_revenue) as net_revenue

    from orders

),

line_totals as (

    select
        count(*) as line_count,
        sum(net_revenue) as net_revenue

    from order_lines

),

differences as (

    select
        order_totals.line_count as order_line_count,
        line_totals.line_count as line_line_count,
        order_totals.net_revenue as order_net_revenue,
        line_totals.net_revenue as line_net_revenue

    from order_totals
    cross join line_totals
    where order_totals.line_count <> line_totals.line_count
        or order_totals.net_revenue <> line_totals.net_revenue

)

select * from differences
