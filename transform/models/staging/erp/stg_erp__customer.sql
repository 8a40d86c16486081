with

source as (

    select * from {{ source('erp', 'customer') }}

),

renamed as (

    select

        ---------- ids
        {{ cast_integer('c_custkey') }} as customer_key,
        {{ cast_integer('c_nationkey', 'integer') }} as nation_key,

        ---------- text
        cast(c_name as varchar) as customer_name,
        cast(c_address as varchar) as customer_address,
        cast(c_phone as varchar) as phone_number,
        cast(c_mktsegment as varchar) as market_segment,
        cast(c_comment as varchar) as customer_comment,

        ---------- numerics
        cast(c_acctbal as decimal(15, 2)) as account_balance,

        ---------- lineage
        cast(_partition_id as varchar) as source_partition_id,
        cast(_loaded_at as timestamp) as loaded_at

    from source

)

select * from renamed
