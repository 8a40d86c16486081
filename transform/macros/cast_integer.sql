{#-
    Cast a raw column to an integer type, whatever type the loader produced:
    an integer, a DOUBLE (Excel), or text such as '7' or '7.0' (Excel, all-varchar CSV).

    DuckDB casts all of these directly. PostgreSQL refuses '7.0'::bigint, so there
    the value goes through numeric first.
-#}
{% macro cast_integer(column_name, data_type='bigint') -%}
    {{ return(adapter.dispatch('cast_integer', 'millpond')(column_name, data_type)) }}
{%- endmacro %}

{% macro default__cast_integer(column_name, data_type) -%}
    cast(cast({{ column_name }} as numeric) as {{ data_type }})
{%- endmacro %}

{% macro duckdb__cast_integer(column_name, data_type) -%}
    cast({{ column_name }} as {{ data_type }})
{%- endmacro %}
