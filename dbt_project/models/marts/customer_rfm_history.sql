{#- RFM per customer per snapshot (month ends plus the latest as-of date), so segment migration
    can be shown. Incremental: a nightly run computes only snapshots it has not stored yet (new
    month ends and the new latest date); the previous "latest" row (not a month end) and the rows
    of the as-of date itself are dropped first by the pre-hook, so a re-run the same day (after a
    merge or split of customer ids) rewrites the latest snapshot. Past snapshots are never recomputed, so later changes to old orders
    (a return) do not rewrite history. -#}
{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        pre_hook="{% if is_incremental() %}delete from {{ this }} where not is_month_end or snapshot_date >= (select as_of_date from {{ ref('int_reporting_dates') }}){% endif %}",
        on_schema_change='fail'
    )
}}

with snapshot_dates as (
    select * from {{ ref('int_rfm_snapshot_dates') }}
    {% if is_incremental() %}
    where not is_month_end
        or snapshot_date > (select coalesce(max(snapshot_date), cast('1900-01-01' as date))
                            from {{ this }} where is_month_end)
    {% endif %}
),

orders as (
    select orders.customer_id, orders.order_day, orders.order_month, orders.revenue_amount
    from {{ ref('orders') }} as orders
    cross join {{ ref('int_reporting_dates') }} as as_of
    where orders.is_revenue and orders.customer_id is not null and orders.order_day <= as_of.as_of_date
),

-- one row per customer per month first: snapshots then join months, not orders
monthly as (
    select
        customer_id,
        order_month,
        max(order_day) as last_order_on,
        count(*) as orders,
        sum(revenue_amount) as revenue
    from orders
    group by customer_id, order_month
),

rfm_values as (
    select
        monthly.customer_id,
        snapshot_dates.snapshot_date,
        max(monthly.last_order_on) as last_order_on,
        {{ dbt.datediff('max(monthly.last_order_on)', 'snapshot_dates.snapshot_date', 'day') }} as recency_days,
        sum(monthly.orders) as frequency,
        round(sum(monthly.revenue), 2) as monetary
    from snapshot_dates
    inner join monthly
        on monthly.order_month <= snapshot_dates.snapshot_date
    group by monthly.customer_id, snapshot_dates.snapshot_date
),

scored as (
    {{ score_rfm('rfm_values') }}
),

segments as (
    select * from {{ ref('rfm_segments') }}
)

select
    scored.customer_id,
    scored.snapshot_date,
    snapshot_dates.is_month_end,
    scored.recency_days,
    scored.frequency,
    scored.monetary,
    scored.r_score,
    scored.f_score,
    scored.m_score,
    scored.fm_score,
    segments.segment,
    {{ dbt.current_timestamp() }} as computed_at
from scored
inner join snapshot_dates
    on snapshot_dates.snapshot_date = scored.snapshot_date
left join segments
    on segments.r_score = scored.r_score
    and segments.fm_score = scored.fm_score
