with

line_items as (

    select * from {{ ref('stg_erp__lineitem') }}

),

orders as (

    select * from {{ ref('stg_erp__orders') }}

),

order_lines as (

    select
        line_items.order_key,
        line_items.line_number,
        line_items.part_key,
        line_items.supplier_key,
        orders.customer_key,

        orders.order_date,
        line_items.ship_date,
        line_items.commit_date,
        line_items.receipt_date,

        line_items.quantity,
        line_items.extended_price,
        line_items.discount,
        line_items.tax,
        -- exact: 2 decimals times 2 decimals, and that times 2 decimals again
        cast(
            line_items.extended_price * (1 - line_items.discount) as decimal(18, 4)
        ) as net_revenue,
        cast(
            line_items.extended_price * (1 - line_items.discount) * (1 + line_items.tax)
            as decimal(18, 6)
        ) as charge,

        line_items.return_flag,
        line_items.line_status,
        line_items.ship_mode

    from line_items

    inner join orders
        on line_items.order_key = orders.order_key

)

select * from order_lines
