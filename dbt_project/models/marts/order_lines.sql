with lines as (
    select * from {{ ref('stg_sales__order_lines') }}
),

orders as (
    select * from {{ ref('orders') }}
),

products as (
    select * from {{ ref('stg_sales__products') }}
)

select
    lines.order_line_id,
    lines.order_id,
    orders.customer_id,
    orders.order_day,
    orders.status as order_status,
    orders.is_revenue,
    lines.product_id,
    products.product_name,
    coalesce(products.category, 'Unknown') as category,
    lines.quantity,
    lines.unit_price,
    lines.line_amount
from lines
inner join orders
    on orders.source_system = lines.source_system
    and orders.order_id = lines.order_id
left join products
    on products.product_id = lines.product_id
