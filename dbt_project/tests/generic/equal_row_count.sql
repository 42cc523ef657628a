{#- The model has exactly as many rows as `compare_model` (optionally filtered). -#}
{% test equal_row_count(model, compare_model, compare_where="1 = 1") %}
select a.n as model_rows, b.n as compare_rows
from (select count(*) as n from {{ model }}) as a
cross join (select count(*) as n from {{ compare_model }} where {{ compare_where }}) as b
where a.n <> b.n
{% endtest %}
