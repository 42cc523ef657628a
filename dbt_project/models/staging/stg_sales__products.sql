with source as (
    select * from {{ source('raw', 'sales_products') }}
),

latest as (
    {{ latest_row('source', 'product_id', 'updated_at desc, _ingested_at desc') }}
)

select
    product_id,
    {{ clean_text('product_name') }} as product_name,
    coalesce({{ clean_text('category') }}, 'Unknown') as category,
    list_price,
    created_at,
    updated_at
from latest
