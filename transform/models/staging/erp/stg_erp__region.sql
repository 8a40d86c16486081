with

source as (

    select * from {{ source('erp', 'region') }}

),

renamed as (

    select

        ---------- ids
        {{ cast_integer('r_regionkey', 'integer') }} as region_key,

        ---------- text
        cast(r_name as varchar) as region_name,
        cast(r_comment as varchar) as region_comment,

        ---------- lineage
        cast(_partition_id as varchar) as source_partition_id,
        cast(_loaded_at as timestamp) as loaded_at

    from source

)

select * from renamed
