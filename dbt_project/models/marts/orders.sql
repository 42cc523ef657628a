{#- One row per order (its latest state) with the resolved customer. Revenue counts placed and
    shipped orders; cancelled and returned orders carry revenue_amount 0. -#}
with orders as (
    select * from {{ ref('stg_sales__orders') }}
),

records as (
    select * from {{ ref('int_customer_records') }}
    where source = 'sales_contacts'
)

select
    orders.source_system,
    orders.order_id,
    records.customer_id,
    orders.customer_ref,
    orders.account_id,
    orders.owner_rep_id,
    orders.order_date,
    orders.order_day,
    cast({{ dbt.date_trunc('month', 'orders.order_day') }} as date) as order_month,
    orders.status,
    orders.channel,
    orders.discount_pct,
    orders.payment_terms_days,
    orders.total_amount,
    orders.status in ('placed', 'shipped') as is_revenue,
    orders.status = 'returned' as is_returned,
    case when orders.status in ('placed', 'shipped') then orders.total_amount else 0 end as revenue_amount,
    orders.created_at,
    orders.updated_at
from orders
left join records
    on records.source_system = orders.customer_system
    and records.source_key = orders.customer_ref
