{{ config(
    materialized='incremental',
    unique_key=['source_system', '_source_key'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook="{{ drop_tombstones() }}",
) }}
{%- set plan = incremental_plan('sales_order_lines') %}

with keyed as (
    select *, {{ source_system() }} as source_system, order_line_id as _source_key
    from {{ source('raw', 'sales_order_lines') }}
),

{{ incremental_rows('keyed', plan, ['source_system', '_source_key']) }},

latest as (
    {{ latest_row('rows_to_stage', 'source_system, _source_key', 'updated_at desc, _ingested_at desc') }}
),

staged as (
    select
        source_system,
        order_line_id,
        {{ clean_text('order_id') }} as order_id,
        product_id,
        quantity,
        unit_price,
        quantity * unit_price as line_amount,
        created_at,
        updated_at,
        _source_key,
        _partition_date,
        {{ ledger_mark('sales_order_lines') }} as _ledger_mark,
        false as _tombstone
    from latest
)

select * from staged
union all by name
{{ tombstones('staged', ['source_system', '_source_key']) }}
