{#- Fails on every row where the expression is not true (dbt_utils' test, without the package:
    the build has no network to install packages). On a column, null values pass. -#}
{% test expression_is_true(model, expression, column_name=none) %}
select *
from {{ model }}
where not ({{ expression }})
{% endtest %}
