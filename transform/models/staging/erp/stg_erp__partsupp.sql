with

source as (

    select * from {{ source('erp', 'partsupp') }}

),

renamed as (

    select

        ---------- ids
        {{ cast_integer('ps_partkey') }} as part_key,
        {{ cast_integer('ps_suppkey') }} as supplier_key,

        ---------- text
        cast(ps_comment as varchar) as partsupp_comment,

        ---------- numerics
        {{ cast_integer('ps_availqty', 'integer') }} as available_quantity,
        cast(ps_supplycost as decimal(15, 2)) as supply_cost,

        ---------- lineage
        cast(_partition_id as varchar) as source_partition_id,
        cast(_loaded_at as timestamp) as loaded_at

    from source

)

select * from renamed
