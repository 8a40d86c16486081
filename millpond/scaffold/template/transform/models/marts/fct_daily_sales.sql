with orders as (
    select * from {{ ref('stg_shop__orders') }}
),

daily as (
    select
        ordered_on,
        count(*) as orders,
        sum(amount) as revenue
    from orders
    group by ordered_on
)

select * from daily
