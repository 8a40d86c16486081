-- An order's status follows from its lines: F when every line is fulfilled,
-- O when every line is open, P otherwise. Returns the orders that disagree.

with

orders as (

    select * from {{ ref('fct_orders') }}

),

mismatched_orders as (

    select
        order_key,
        order_status,
        line_count,
        open_line_count

    from orders
    where line_count > 0
        and order_status <> case
            when open_line_count = 0 then 'F'
            when open_line_count = line_count then 'O'
            else 'P'
        end

)

select * from mismatched_orders
