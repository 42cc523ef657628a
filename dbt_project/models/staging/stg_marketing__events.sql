{#- At-least-once delivery: an event can arrive twice (same event_id, same or next file) and a
    day or two late. Keep the first copy read; the event's day is the day it happened
    (occurred_at), not the day of the file that brought it. -#}
with source as (
    select *, {{ source_system() }} as source_system from {{ source('raw', 'marketing_events') }}
),

first_copy as (
    {{ latest_row('source', 'source_system, event_id', '_ingested_at asc, _partition_date asc, _source_location asc') }}
)

select
    source_system,
    {{ clean_text('event_id') }} as event_id,
    {{ clean_email('email') }} as email,
    {{ clean_text('campaign_id') }} as campaign_id,
    {{ clean_category('event_type') }} as event_type,
    occurred_at,
    cast(occurred_at as date) as occurred_on,
    _partition_date as delivered_on,
    conversion_value
from first_copy
