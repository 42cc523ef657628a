{#- Campaign files are re-dropped when a campaign changes: keep the last one read. -#}
with source as (
    select * from {{ source('raw', 'marketing_campaigns') }}
),

latest as (
    {{ latest_row('source', 'campaign_id', '_partition_date desc, _ingested_at desc') }}
)

select
    {{ clean_text('campaign_id') }} as campaign_id,
    {{ clean_text('campaign_name') }} as campaign_name,
    {{ clean_category('channel') }} as channel,
    {{ clean_text('offer') }} as offer,
    discount_pct,
    launched_at,
    cast(launched_at as date) as launched_on
from latest
