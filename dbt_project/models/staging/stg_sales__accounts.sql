with source as (
    select * from {{ source('raw', 'sales_accounts') }}
),

latest as (
    {{ latest_row('source', 'account_id', 'updated_at desc, _ingested_at desc') }}
)

select
    account_id,
    {{ clean_text('account_name') }} as account_name,
    upper({{ clean_text('account_type') }}) as account_type,
    {{ clean_text('region') }} as region,
    owner_rep_id,
    payment_terms_days,
    created_at,
    updated_at
from latest
