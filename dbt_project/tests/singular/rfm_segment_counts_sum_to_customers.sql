{{ config(meta={'dagster': {'ref': {'name': 'customer_rfm'}}}) }}
-- Segment counts in customer_rfm add up to the customers with a revenue order by the as-of date,
-- and every one of them has a segment.
with segment_counts as (
    select segment, count(*) as customers
    from {{ ref('customer_rfm') }}
    group by segment
),

expected as (
    select count(distinct orders.customer_id) as customers
    from {{ ref('orders') }} as orders
    cross join {{ ref('int_reporting_dates') }} as as_of
    where orders.is_revenue and orders.order_day <= as_of.as_of_date
)

select expected.customers as expected_customers, sum(segment_counts.customers) as segmented_customers
from expected
cross join segment_counts
group by expected.customers
having sum(segment_counts.customers) <> expected.customers
    or sum(case when segment_counts.segment is null then segment_counts.customers else 0 end) > 0
