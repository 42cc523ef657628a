with source as (
    select *, {{ source_system() }} as source_system from {{ source('raw', 'sales_order_lines') }}
),

latest as (
    {{ latest_row('source', 'source_system, order_line_id', 'updated_at desc, _ingested_at desc') }}
)

select
    source_system,
    order_line_id,
    {{ clean_text('order_id') }} as order_id,
    product_id,
    quantity,
    unit_price,
    quantity * unit_price as line_amount,
    created_at,
    updated_at
from latest
