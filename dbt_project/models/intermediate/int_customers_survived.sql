{#- Survivorship, field by field: the most trusted source for the field (seed survivorship_rules),
    then the most recent non-empty value, then the record key (so the answer never depends on row
    order). Each field keeps the name of the source it came from. One pass over the records: per
    customer and field, the value of the record that sorts first by (priority, newest, record key). -#}
{% set fields = [
    'email', 'phone', 'first_name', 'last_name', 'birth_date',
    'address_line1', 'address_line2', 'city', 'postcode', 'region', 'country'
] %}

with records as (
    select * from {{ ref('int_customer_records') }}
),

priorities as (
    select
        source,
        {% for field in fields %}
        min(priority) filter (where field = '{{ field }}') as {{ field }}_priority{% if not loop.last %},{% endif %}
        {% endfor %}
    from {{ ref('survivorship_rules') }}
    group by source
),

candidates as (
    select
        records.*,
        {% for field in fields %}
        coalesce(priorities.{{ field }}_priority, 999) as {{ field }}_priority,
        {% endfor %}
        -- newest first, undated last
        coalesce(-epoch_us(records.record_updated_at), 9223372036854775807) as recency
    from records
    left join priorities
        on priorities.source = records.source
)

select
    customer_id,
    {% for field in fields %}
    {%- set first = "{'priority': " ~ field ~ "_priority, 'recency': recency, 'record_key': record_key}" %}
    arg_min({{ field }}, {{ first }}) filter (where {{ field }} is not null) as {{ field }},
    arg_min(source, {{ first }}) filter (where {{ field }} is not null) as {{ field }}_source{% if not loop.last %},{% endif %}
    {% endfor %}
from candidates
group by customer_id
