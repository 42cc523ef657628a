with source as (
    select * from {{ source('raw', 'sales_opportunities') }}
),

latest as (
    {{ latest_row('source', 'opportunity_id', 'updated_at desc, _ingested_at desc') }}
)

select
    opportunity_id,
    account_id,
    owner_rep_id,
    {{ clean_category('stage') }} as stage,
    amount,
    stage_changed_at,
    created_at,
    updated_at
from latest
