{#- Small cross-database helpers that dbt's own cross-database macros do not cover. -#}

{% macro median(expr) -%}
    {{ return(adapter.dispatch('median', 'crm_warehouse')(expr)) }}
{%- endmacro %}

{% macro default__median(expr) -%}
    percentile_cont(0.5) within group (order by {{ expr }})
{%- endmacro %}

{% macro duckdb__median(expr) -%}
    median({{ expr }})
{%- endmacro %}

{% macro spark__median(expr) -%}
    percentile({{ expr }}, 0.5)
{%- endmacro %}

{#- Keep one row per key: the latest by the given ordering (row_number, not QUALIFY, so it runs on
    engines without QUALIFY). -#}
{% macro latest_row(relation, partition_by, order_by) -%}
    select * from (
        select
            src.*,
            row_number() over (partition by {{ partition_by }} order by {{ order_by }}) as _row_rank
        from {{ relation }} as src
    ) as ranked
    where _row_rank = 1
{%- endmacro %}

{#- Quintile score 1..5 from a rank: ties share the lowest rank, so equal values score the same and
    the result does not depend on row order. `order_by` sorts from the worst value to the best. -#}
{% macro quintile_score(order_by, partition_by=none) -%}
    cast(floor(5.0 * (rank() over ({% if partition_by %}partition by {{ partition_by }} {% endif %}order by {{ order_by }}) - 1)
        / count(*) over ({% if partition_by %}partition by {{ partition_by }}{% endif %})) as integer) + 1
{%- endmacro %}

{#- Round half up of the mean of the frequency and monetary scores (integer 1..5). -#}
{% macro fm_score(f_score, m_score) -%}
    cast(floor(({{ f_score }} + {{ m_score }}) / 2.0 + 0.5) as integer)
{%- endmacro %}
