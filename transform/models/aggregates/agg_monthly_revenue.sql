-- Net revenue, orders and distinct ordering customers per order month.

with

orders as (

    select * from {{ ref('fct_orders') }}

),

orders_with_month as (

    select
        cast({{ dbt.date_trunc('month', 'order_date') }} as date) as order_month,
        order_key,
        customer_key,
        net_revenue

    from orders

),

monthly_revenue as (

    select
        order_month,
        sum(net_revenue) as revenue,
        count(*) as order_count,
        count(distinct customer_key) as customer_count

    from orders_with_month
    group by order_month

)

select * from monthly_revenue
order by order_month
