{#- No two rows share the combination of `columns`. With `recent` (a condition on the model's rows,
    e.g. the rows the last run wrote), only combinations held by a recent row are counted, over the
    whole table: what an incremental run can have broken, at the cost of its own rows, not of the
    table's. `crm build --full-refresh` (var full_audit) counts every combination. -#}
{% test unique_combination(model, columns, recent=none) %}
{%- set key = columns | join(', ') %}
select {{ key }}, count(*) as n
from {{ model }}
{%- if recent and not var('full_audit', false) %}
semi join (select {{ key }} from {{ model }} where {{ recent }}) as recent_rows using ({{ key }})
{%- endif %}
group by {{ key }}
having count(*) > 1
{% endtest %}
