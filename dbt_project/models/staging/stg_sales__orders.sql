{#- One row per order: the latest version (status moves placed -> shipped -> returned), per source
    system (two shops may both have an order 1001). `customer_system` is the system whose contacts
    `customer_ref` names: the order's own when it has contacts, else the only system that has
    contacts (orders from a shop, contacts in a CRM), else its own (an orders-only company). -#}
{{ config(
    materialized='incremental',
    unique_key=['source_system', '_source_key'],
    incremental_strategy='delete+insert',
    on_schema_change='fail',
    post_hook="{{ drop_tombstones() }}",
) }}
{%- set plan = incremental_plan('sales_orders', also_read=['sales_contacts']) %}

with keyed as (
    select *, {{ source_system() }} as source_system, order_id as _source_key
    from {{ source('raw', 'sales_orders') }}
),

{{ incremental_rows('keyed', plan, ['source_system', '_source_key']) }},

latest as (
    {{ latest_row('rows_to_stage', 'source_system, _source_key', 'updated_at desc nulls last, _ingested_at desc') }}
),

contact_systems as (
    select distinct {{ source_system() }} as source_system
    from {{ source('raw', 'sales_contacts') }}
),

staged as (
    select
        latest.source_system,
        {{ clean_text('order_id') }} as order_id,
        {{ clean_text('customer_ref') }} as customer_ref,
        case
            when latest.source_system in (select source_system from contact_systems) then latest.source_system
            when (select count(*) from contact_systems) = 1 then (select min(source_system) from contact_systems)
            else latest.source_system
        end as customer_system,
        account_id,
        order_date,
        cast(order_date as date) as order_day,
        coalesce({{ clean_category('status') }}, 'placed') as status,
        {{ clean_category('channel') }} as channel,
        coalesce(discount_pct, 0) as discount_pct,
        payment_terms_days,
        owner_rep_id,
        total_amount,
        {{ clean_email('email') }} as email,
        {{ clean_text('phone') }} as phone_raw,
        {{ clean_text('first_name') }} as first_name,
        {{ clean_text('last_name') }} as last_name,
        {{ clean_text('city') }} as city,
        {{ clean_postcode('postcode') }} as postcode,
        {{ person_attributes() }},
        created_at,
        updated_at,
        _source_key,
        _partition_date,
        {{ ledger_mark('sales_orders') }} as _ledger_mark,
        false as _tombstone
    from latest
)

select * from staged
union all by name
{{ tombstones('staged', ['source_system', '_source_key']) }}
