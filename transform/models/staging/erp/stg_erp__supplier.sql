with

source as (

    select * from {{ source('erp', 'supplier') }}

),

renamed as (

    select

        ---------- ids
        {{ cast_integer('s_suppkey') }} as supplier_key,
        {{ cast_integer('s_nationkey', 'integer') }} as nation_key,

        ---------- text
        cast(s_name as varchar) as supplier_name,
        cast(s_address as varchar) as supplier_address,
        cast(s_phone as varchar) as phone_number,
        cast(s_comment as varchar) as supplier_comment,

        ---------- numerics
        cast(s_acctbal as decimal(15, 2)) as account_balance,

        ---------- lineage
        cast(_partition_id as varchar) as source_partition_id,
        cast(_loaded_at as timestamp) as loaded_at

    from source

)

select * from renamed
