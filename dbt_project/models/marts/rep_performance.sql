{#- Per sales rep: the book (customers they own), its revenue, and customers lost: book customers
    whose last revenue order is more than var('lost_after_days') before the as-of date. -#}
with reps as (
    select * from {{ ref('stg_sales__reps') }}
),

customer_360 as (
    select * from {{ ref('customer_360') }}
    where owner_rep_id is not null
),

opportunities as (
    select * from {{ ref('stg_sales__opportunities') }}
),

book as (
    select
        owner_rep_id as rep_id,
        count(*) as book_size,
        sum(case when segment = 'B2B' then 1 else 0 end) as b2b_customers,
        sum(case when orders_lifetime > 0 then 1 else 0 end) as customers_with_orders,
        sum(case when orders_365d > 0 then 1 else 0 end) as active_customers_365d,
        sum(case when orders_lifetime > 0 and days_since_last_order > {{ var('lost_after_days') }}
            then 1 else 0 end) as customers_lost,
        sum(revenue_lifetime) as revenue_lifetime,
        sum(revenue_365d) as revenue_365d,
        sum(revenue_90d) as revenue_90d
    from customer_360
    group by owner_rep_id
),

pipeline as (
    select
        owner_rep_id as rep_id,
        sum(case when stage not in ('won', 'lost') then amount else 0 end) as open_pipeline_amount,
        sum(case when stage = 'won' then amount else 0 end) as won_amount
    from opportunities
    where owner_rep_id is not null
    group by owner_rep_id
),

rep_ids as (
    select rep_id from reps
    union
    select rep_id from book
)

select
    rep_ids.rep_id,
    reps.rep_name,
    reps.region,
    cast(coalesce(book.book_size, 0) as {{ dbt.type_bigint() }}) as book_size,
    cast(coalesce(book.b2b_customers, 0) as {{ dbt.type_bigint() }}) as b2b_customers,
    cast(coalesce(book.customers_with_orders, 0) as {{ dbt.type_bigint() }}) as customers_with_orders,
    cast(coalesce(book.active_customers_365d, 0) as {{ dbt.type_bigint() }}) as active_customers_365d,
    cast(coalesce(book.customers_lost, 0) as {{ dbt.type_bigint() }}) as customers_lost,
    case when book.customers_with_orders > 0 then 1.0 * book.customers_lost / book.customers_with_orders end
        as lost_share,
    coalesce(book.revenue_lifetime, 0) as revenue_lifetime,
    coalesce(book.revenue_365d, 0) as revenue_365d,
    coalesce(book.revenue_90d, 0) as revenue_90d,
    coalesce(pipeline.open_pipeline_amount, 0) as open_pipeline_amount,
    coalesce(pipeline.won_amount, 0) as won_amount
from rep_ids
left join reps
    on reps.rep_id = rep_ids.rep_id
left join book
    on book.rep_id = rep_ids.rep_id
left join pipeline
    on pipeline.rep_id = rep_ids.rep_id
