{#- A ticket reappears in the export on each change: keep its latest state (per help desk: two
    desks may number their tickets alike). -#}
{{ config(
    materialized='incremental',
    unique_key=['source_system', '_source_key'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook="{{ drop_tombstones() }}",
) }}
{%- set plan = incremental_plan('support_tickets') %}

with keyed as (
    select *, {{ source_system() }} as source_system, ticket_id as _source_key
    from {{ source('raw', 'support_tickets') }}
),

{{ incremental_rows('keyed', plan, ['source_system', '_source_key']) }},

latest as (
    {{ latest_row('rows_to_stage', 'source_system, _source_key', 'updated_at desc, _ingested_at desc') }}
),

staged as (
    select
        source_system,
        ticket_id,
        {{ dbt.cast('ticket_id', dbt.type_string()) }} as ticket_key,
        {{ clean_text('requester_name') }} as requester_name,
        {{ clean_email('requester_email') }} as requester_email,
        {{ clean_text('requester_phone') }} as requester_phone_raw,
        {{ clean_text('first_name') }} as first_name,
        {{ clean_text('last_name') }} as last_name,
        {{ clean_text('city') }} as city,
        {{ clean_postcode('postcode') }} as postcode,
        {{ person_attributes() }},
        {{ clean_category('channel') }} as channel,
        {{ clean_category('priority') }} as priority,
        {{ clean_category('status') }} as status,
        {{ clean_text('subject') }} as subject,
        created_at,
        updated_at,
        solved_at,
        {{ clean_category('satisfaction_score') }} as satisfaction_score,
        {{ clean_text('satisfaction_comment') }} as satisfaction_comment,
        _source_key,
        _partition_date,
        {{ ledger_mark('support_tickets') }} as _ledger_mark,
        false as _tombstone
    from latest
)

select * from staged
union all by name
{{ tombstones('staged', ['source_system', '_source_key']) }}
