{#- A model's +schema is its schema as written (staging, marts), not dbt's default
    <target schema>_<schema>: readers and millpond.yml's publish name them plainly. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {{ custom_schema_name if custom_schema_name else target.schema }}
{%- endmacro %}
