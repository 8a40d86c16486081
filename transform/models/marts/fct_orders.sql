with

orders as (

    select * from {{ ref('stg_erp__orders') }}

),

order_lines as (

    select * from {{ ref('fct_order_lines') }}

),

order_line_summary as (

    select
        order_key,
        count(*) as line_count,
        count(case when line_status = 'O' then 1 end) as open_line_count,
        count(case when return_flag = 'R' then 1 end) as returned_line_count,
        cast(sum(quantity) as decimal(18, 2)) as total_quantity,
        cast(sum(extended_price) as decimal(18, 2)) as gross_revenue,
        cast(sum(net_revenue) as decimal(18, 4)) as net_revenue,
        cast(sum(charge) as decimal(18, 6)) as total_charge,
        min(ship_date) as first_ship_date,
        max(ship_date) as last_ship_date

    from order_lines
    group by order_key

),

orders_with_lines as (

    select
        orders.order_key,
        orders.customer_key,
        orders.order_date,
        orders.order_status,
        orders.order_priority,
        orders.clerk_name,
        orders.ship_priority,
        orders.total_price,

        coalesce(order_line_summary.line_count, 0) as line_count,
        coalesce(order_line_summary.open_line_count, 0) as open_line_count,
        coalesce(order_line_summary.returned_line_count, 0) as returned_line_count,
        coalesce(order_line_summary.total_quantity, 0) as total_quantity,
        coalesce(order_line_summary.gross_revenue, 0) as gross_revenue,
        coalesce(order_line_summary.net_revenue, 0) as net_revenue,
        coalesce(order_line_summary.total_charge, 0) as total_charge,
        order_line_summary.first_ship_date,
        order_line_summary.last_ship_date

    from orders

    left join order_line_summary
        on orders.order_key = order_line_summary.order_key

)

select * from orders_with_lines
