with

source as (

    select * from {{ source('erp', 'lineitem') }}

),

renamed as (

    select

        ---------- ids
        {{ cast_integer('l_orderkey') }} as order_key,
        {{ cast_integer('l_linenumber', 'integer') }} as line_number,
        {{ cast_integer('l_partkey') }} as part_key,
        {{ cast_integer('l_suppkey') }} as supplier_key,

        ---------- text
        cast(l_returnflag as varchar) as return_flag,
        cast(l_linestatus as varchar) as line_status,
        cast(l_shipinstruct as varchar) as ship_instructions,
        cast(l_shipmode as varchar) as ship_mode,
        cast(l_comment as varchar) as line_comment,

        ---------- numerics
        cast(l_quantity as decimal(15, 2)) as quantity,
        cast(l_extendedprice as decimal(15, 2)) as extended_price,
        cast(l_discount as decimal(15, 2)) as discount,
        cast(l_tax as decimal(15, 2)) as tax,

        ---------- dates
        cast(l_shipdate as date) as ship_date,
        cast(l_commitdate as date) as commit_date,
        cast(l_receiptdate as date) as receipt_date,

        ---------- lineage
        cast(_partition_id as varchar) as source_partition_id,
        cast(_loaded_at as timestamp) as loaded_at

    from source

)

select * from renamed
