{#- Survivorship, field by field: the most trusted source for the field (seed survivorship_rules),
    then the most recent non-empty value, then the record key (so the answer never depends on row
    order). Each field keeps the name of the source it came from. -#}
with records as (
    select * from {{ ref('int_customer_records') }}
),

rules as (
    select * from {{ ref('survivorship_rules') }}
),

candidates as (
    {% set fields = [
        'email', 'phone', 'first_name', 'last_name', 'birth_date',
        'address_line1', 'address_line2', 'city', 'postcode', 'region', 'country'
    ] %}
    {% for field in fields %}
    select customer_id, '{{ field }}' as field, {{ field }} as field_value, source, record_updated_at, record_key
    from records
    where {{ field }} is not null
    {% if not loop.last %}union all{% endif %}
    {% endfor %}
),

ranked as (
    select
        candidates.*,
        row_number() over (
            partition by candidates.customer_id, candidates.field
            order by coalesce(rules.priority, 999), candidates.record_updated_at desc nulls last, candidates.record_key
        ) as field_rank
    from candidates
    left join rules
        on rules.field = candidates.field
        and rules.source = candidates.source
),

winners as (
    select * from ranked where field_rank = 1
),

customer_ids as (
    select distinct customer_id from records
)

select
    customer_ids.customer_id,
    {% for field in ['email', 'phone', 'first_name', 'last_name', 'birth_date',
                     'address_line1', 'address_line2', 'city', 'postcode', 'region', 'country'] %}
    max(case when winners.field = '{{ field }}' then winners.field_value end) as {{ field }},
    max(case when winners.field = '{{ field }}' then winners.source end) as {{ field }}_source{% if not loop.last %},{% endif %}
    {% endfor %}
from customer_ids
left join winners
    on winners.customer_id = customer_ids.customer_id
group by customer_ids.customer_id
