with

source as (

    select * from {{ source('erp', 'nation') }}

),

renamed as (

    select

        ---------- ids
        {{ cast_integer('n_nationkey', 'integer') }} as nation_key,
        {{ cast_integer('n_regionkey', 'integer') }} as region_key,

        ---------- text
        cast(n_name as varchar) as nation_name,
        cast(n_comment as varchar) as nation_comment,

        ---------- lineage
        cast(_partition_id as varchar) as source_partition_id,
        cast(_loaded_at as timestamp) as loaded_at

    from source

)

select * from renamed
