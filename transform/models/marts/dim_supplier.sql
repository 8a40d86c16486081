with

suppliers as (

    select * from {{ ref('stg_erp__supplier') }}

),

nations as (

    select * from {{ ref('stg_erp__nation') }}

),

regions as (

    select * from {{ ref('stg_erp__region') }}

),

suppliers_with_geography as (

    select
        suppliers.supplier_key,
        suppliers.supplier_name,
        suppliers.supplier_address,
        suppliers.phone_number,
        suppliers.account_balance,
        suppliers.nation_key,
        nations.nation_name,
        nations.region_key,
        regions.region_name

    from suppliers

    left join nations
        on suppliers.nation_key = nations.nation_key

    left join regions
        on nations.region_key = regions.region_key

)

select * from suppliers_with_geography
