with

customers as (

    select * from {{ ref('stg_erp__customer') }}

),

nations as (

    select * from {{ ref('stg_erp__nation') }}

),

regions as (

    select * from {{ ref('stg_erp__region') }}

),

customers_with_geography as (

    select
        customers.customer_key,
        customers.customer_name,
        customers.customer_address,
        customers.phone_number,
        customers.market_segment,
        customers.account_balance,
        customers.nation_key,
        nations.nation_name,
        nations.region_key,
        regions.region_name

    from customers

    left join nations
        on customers.nation_key = nations.nation_key

    left join regions
        on nations.region_key = regions.region_key

)

select * from customers_with_geography
