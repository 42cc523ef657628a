{% test row_count_equals(model, expected) %}
select n from (select count(*) as n from {{ model }}) as counted
where n <> {{ expected }}
{% endtest %}
