{#- Marketing events, one row per event id (duplicates removed in staging), on the day they
    happened, with the resolved customer. -#}
with events as (
    select * from {{ ref('stg_marketing__events') }}
),

records as (
    select * from {{ ref('int_customer_records') }}
    where source = 'marketing_contacts'
),

campaigns as (
    select * from {{ ref('stg_marketing__campaigns') }}
)

select
    events.source_system,
    events.event_id,
    records.customer_id,
    events.email,
    events.campaign_id,
    campaigns.channel as campaign_channel,
    events.event_type,
    events.occurred_at,
    events.occurred_on,
    events.delivered_on,
    coalesce(events.conversion_value, 0) as conversion_value
from events
left join records
    on records.source_system = events.source_system
    and records.source_key = events.email
left join campaigns
    on campaigns.campaign_id = events.campaign_id
