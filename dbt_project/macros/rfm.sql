{#- Score a relation of (customer_id, snapshot_date, recency_days, frequency, monetary): quintile
    scores within each snapshot, worst value first (long recency, few orders, little money). -#}
{% macro score_rfm(rfm_values) -%}
    select
        scored.*,
        {{ fm_score('scored.f_score', 'scored.m_score') }} as fm_score
    from (
        select
            {{ rfm_values }}.*,
            {{ quintile_score('recency_days desc', 'snapshot_date') }} as r_score,
            {{ quintile_score('frequency asc', 'snapshot_date') }} as f_score,
            {{ quintile_score('monetary asc', 'snapshot_date') }} as m_score
        from {{ rfm_values }}
    ) as scored
{%- endmacro %}
