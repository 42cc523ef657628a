with source as (
    select * from {{ source('raw', 'sales_reps') }}
),

latest as (
    {{ latest_row('source', 'rep_id', 'updated_at desc, _ingested_at desc') }}
)

select
    rep_id,
    {{ clean_text('rep_name') }} as rep_name,
    {{ clean_email('email') }} as email,
    {{ clean_text('region') }} as region,
    hired_at,
    created_at,
    updated_at
from latest
