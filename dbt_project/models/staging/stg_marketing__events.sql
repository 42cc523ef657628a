{#- At-least-once delivery: an event can arrive twice (same event_id, same or next file) and a
    day or two late. Keep the first copy read; the event's day is the day it happened
    (occurred_at), not the day of the file that brought it. Incremental (macros/incremental.sql):
    a nightly run restages only the event ids whose raw rows changed. -#}
{{ config(
    materialized='incremental',
    unique_key=['source_system', '_source_key'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook="{{ drop_tombstones() }}",
) }}
{%- set plan = incremental_plan('marketing_events') %}

with keyed as (
    select *, {{ source_system() }} as source_system, event_id as _source_key
    from {{ source('raw', 'marketing_events') }}
),

{{ incremental_rows('keyed', plan, ['source_system', '_source_key']) }},

first_copy as (
    {{ latest_row('rows_to_stage', 'source_system, _source_key', '_ingested_at asc, _partition_date asc, _source_location asc') }}
),

staged as (
    select
        source_system,
        {{ clean_text('event_id') }} as event_id,
        {{ clean_email('email') }} as email,
        {{ clean_text('campaign_id') }} as campaign_id,
        {{ clean_category('event_type') }} as event_type,
        occurred_at,
        cast(occurred_at as date) as occurred_on,
        _partition_date as delivered_on,
        conversion_value,
        _source_key,
        _partition_date,
        {{ ledger_mark('marketing_events') }} as _ledger_mark,
        false as _tombstone
    from first_copy
)

select * from staged
union all by name
{{ tombstones('staged', ['source_system', '_source_key']) }}
