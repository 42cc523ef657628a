{#- Each stage an opportunity entered (the sales system's stage history). -#}
with source as (
    select * from {{ source('raw', 'sales_opportunity_stages') }}
),

latest as (
    {{ latest_row('source', 'stage_history_id', 'updated_at desc, _ingested_at desc') }}
)

select
    stage_history_id,
    opportunity_id,
    {{ clean_category('stage') }} as stage,
    entered_at,
    created_at,
    updated_at
from latest
