{#- Recency, frequency and monetary value as of the as-of date, for every customer with at least
    one revenue order (placed or shipped) on or before it. Scores are quintiles 1..5 by rank (ties
    share a score; see macro quintile_score); the segment comes from the seed grid rfm_segments on
    (r_score, fm_score). -#}
with as_of as (
    select as_of_date from {{ ref('int_reporting_dates') }}
),

orders as (
    select customer_id, order_day, revenue_amount
    from {{ ref('orders') }}
    where is_revenue and customer_id is not null
),

segments as (
    select * from {{ ref('rfm_segments') }}
),

rfm_values as (
    select
        orders.customer_id,
        as_of.as_of_date as snapshot_date,
        max(orders.order_day) as last_order_on,
        {{ dbt.datediff('max(orders.order_day)', 'as_of.as_of_date', 'day') }} as recency_days,
        count(*) as frequency,
        round(sum(orders.revenue_amount), 2) as monetary
    from orders
    cross join as_of
    where orders.order_day <= as_of.as_of_date
    group by orders.customer_id, as_of.as_of_date
),

scored as (
    {{ score_rfm('rfm_values') }}
)

select
    scored.customer_id,
    scored.snapshot_date,
    scored.last_order_on,
    scored.recency_days,
    scored.frequency,
    scored.monetary,
    scored.r_score,
    scored.f_score,
    scored.m_score,
    scored.fm_score,
    {{ dbt.concat(["cast(scored.r_score as " ~ dbt.type_string() ~ ")",
                   "cast(scored.f_score as " ~ dbt.type_string() ~ ")",
                   "cast(scored.m_score as " ~ dbt.type_string() ~ ")"]) }} as rfm_cell,
    segments.segment
from scored
left join segments
    on segments.r_score = scored.r_score
    and segments.fm_score = scored.fm_score
