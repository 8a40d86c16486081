with

source as (

    select * from {{ source('erp', 'part') }}

),

renamed as (

    select

        ---------- ids
        {{ cast_integer('p_partkey') }} as part_key,

        ---------- text
        cast(p_name as varchar) as part_name,
        cast(p_mfgr as varchar) as manufacturer,
        cast(p_brand as varchar) as brand,
        cast(p_type as varchar) as part_type,
        cast(p_container as varchar) as container,
        cast(p_comment as varchar) as part_comment,

        ---------- numerics
        {{ cast_integer('p_size', 'integer') }} as part_size,
        cast(p_retailprice as decimal(15, 2)) as retail_price,

        ---------- lineage
        cast(_partition_id as varchar) as source_partition_id,
        cast(_loaded_at as timestamp) as loaded_at

    from source

)

select * from renamed
