with

source as (

    select * from {{ source('erp', 'orders') }}

),

renamed as (

    select

        ---------- ids
        {{ cast_integer('o_orderkey') }} as order_key,
        {{ cast_integer('o_custkey') }} as customer_key,

        ---------- text
        cast(o_orderstatus as varchar) as order_status,
        cast(o_orderpriority as varchar) as order_priority,
        cast(o_clerk as varchar) as clerk_name,
        cast(o_comment as varchar) as order_comment,

        ---------- numerics
        cast(o_totalprice as decimal(15, 2)) as total_price,
        {{ cast_integer('o_shippriority', 'integer') }} as ship_priority,

        ---------- dates
        cast(o_orderdate as date) as order_date,

        ---------- lineage
        cast(_partition_id as varchar) as source_partition_id,
        cast(_loaded_at as timestamp) as loaded_at

    from source

)

select * from renamed
