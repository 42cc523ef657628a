{#- One row per order: the latest version (status moves placed -> shipped -> returned). -#}
with source as (
    select * from {{ source('raw', 'sales_orders') }}
),

latest as (
    {{ latest_row('source', 'order_id', 'updated_at desc nulls last, _ingested_at desc') }}
)

select
    {{ clean_text('order_id') }} as order_id,
    {{ clean_text('customer_ref') }} as customer_ref,
    account_id,
    order_date,
    cast(order_date as date) as order_day,
    coalesce({{ clean_category('status') }}, 'placed') as status,
    {{ clean_category('channel') }} as channel,
    coalesce(discount_pct, 0) as discount_pct,
    payment_terms_days,
    owner_rep_id,
    total_amount,
    created_at,
    updated_at
from latest
