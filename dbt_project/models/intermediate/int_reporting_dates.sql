{#- The one "as of" date the marts are computed for: var crm_as_of_date if given, else the last day
    with data (latest order, event or ticket change), else today. -#}
with data_days as (
    select max(order_day) as last_day from {{ ref('stg_sales__orders') }}
    union all
    select max(occurred_on) as last_day from {{ ref('stg_marketing__events') }}
    union all
    select max(cast(updated_at as date)) as last_day from {{ ref('stg_support__tickets') }}
)

select
    {% if var('crm_as_of_date') -%}
    cast('{{ var("crm_as_of_date") }}' as date)
    {%- else -%}
    coalesce(max(last_day), cast({{ dbt.current_timestamp() }} as date))
    {%- endif %} as as_of_date
from data_days
