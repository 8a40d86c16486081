{#-
    Fails for every combination of the given columns that occurs more than once,
    e.g. a composite primary key:

        data_tests:
          - unique_combination_of_columns:
              arguments:
                combination_of_columns: [part_key, supplier_key]
-#}
{% test unique_combination_of_columns(model, combination_of_columns) %}

{%- set column_list = combination_of_columns | join(', ') %}

with

grouped as (

    select
        {{ column_list }},
        count(*) as occurrences

    from {{ model }}
    group by {{ column_list }}

),

duplicates as (

    select * from grouped
    where occurrences > 1

)

select * from duplicates

{% endtest %}
