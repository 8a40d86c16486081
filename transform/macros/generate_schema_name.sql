{#-
    Use a model's custom schema name as-is, so relations land in exactly
    staging / marts / aggregates (not <target_schema>_marts, dbt's default).
    Models without a custom schema go to the target's schema.
-#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
