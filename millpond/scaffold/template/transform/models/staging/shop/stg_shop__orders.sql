with source as (
    select * from {{ source('shop', 'orders') }}
),

renamed as (
    select
        cast(order_id as integer) as order_id,
        cast(customer as varchar) as customer_name,
        cast(ordered_on as date) as ordered_on,
        cast(amount as decimal(12, 2)) as amount
    from source
)

select * from renamed
