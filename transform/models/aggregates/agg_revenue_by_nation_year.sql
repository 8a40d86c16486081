-- Net revenue and order count per customer nation and order year.

with

orders as (

    select * from {{ ref('fct_orders') }}

),

customers as (

    select * from {{ ref('dim_customer') }}

),

orders_with_nation as (

    select
        customers.nation_key,
        customers.nation_name,
        customers.region_name,
        cast(extract(year from orders.order_date) as integer) as order_year,
        orders.net_revenue

    from orders

    inner join customers
        on orders.customer_key = customers.customer_key

),

revenue_by_nation_year as (

    select
        nation_key,
        nation_name,
        region_name,
        order_year,
        sum(net_revenue) as revenue,
        count(*) as order_count

    from orders_with_nation
    group by
        nation_key,
        nation_name,
        region_name,
        order_year

)

select * from revenue_by_nation_year
order by
    nation_name,
    order_year
