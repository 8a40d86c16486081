with

parts as (

    select * from {{ ref('stg_erp__part') }}

),

part_suppliers as (

    select * from {{ ref('stg_erp__partsupp') }}

),

supply_summary as (

    select
        part_key,
        count(*) as supplier_count,
        cast(sum(available_quantity) as bigint) as total_available_quantity,
        min(supply_cost) as min_supply_cost

    from part_suppliers
    group by part_key

),

parts_with_supply as (

    select
        parts.part_key,
        parts.part_name,
        parts.manufacturer,
        parts.brand,
        parts.part_type,
        parts.part_size,
        parts.container,
        parts.retail_price,
        coalesce(supply_summary.supplier_count, 0) as supplier_count,
        coalesce(supply_summary.total_available_quantity, 0) as total_available_quantity,
        supply_summary.min_supply_cost

    from parts

    left join supply_summary
        on parts.part_key = supply_summary.part_key

)

select * from parts_with_supply
