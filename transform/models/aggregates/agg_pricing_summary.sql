-- TPC-H Q1, the pricing summary report: every line shipped on or before
-- date '1998-12-01' - interval '90' day (= 1998-09-02), summarised by
-- return flag and line status.

with

order_lines as (

    select * from {{ ref('fct_order_lines') }}

),

shipped_lines as (

    select * from order_lines
    where ship_date <= cast('1998-09-02' as date)

),

pricing_summary as (

    select
        return_flag,
        line_status,
        sum(quantity) as sum_qty,
        sum(extended_price) as sum_base_price,
        sum(net_revenue) as sum_disc_price,
        sum(charge) as sum_charge,
        avg(quantity) as avg_qty,
        avg(extended_price) as avg_price,
        avg(discount) as avg_disc,
        count(*) as count_order

    from shipped_lines
    group by
        return_flag,
        line_status

)

select * from pricing_summary
order by
    return_flag,
    line_status
