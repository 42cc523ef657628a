{#- The segment of a customer who has no account: "Unknown" when the company's sources hold accounts
    (B2B/B2C is known for others), else the configured default_segment, so that a company without
    any account information is not one big "Unknown" segment. -#}
{% macro segment_without_account() -%}
    (select case when count(*) > 0 then 'Unknown' else '{{ var("default_segment") }}' end
     from {{ ref('stg_sales__accounts') }})
{%- endmacro %}
