{#- Monthly acquisition cohorts (month of a customer's first revenue order) and, for every month
    since acquisition up to the as-of month, the share of the cohort that ordered and the revenue. -#}
with as_of as (
    select as_of_date, cast({{ dbt.date_trunc('month', 'as_of_date') }} as date) as as_of_month
    from {{ ref('int_reporting_dates') }}
),

orders as (
    select orders.customer_id, orders.order_month, orders.revenue_amount
    from {{ ref('orders') }} as orders
    cross join as_of
    where orders.is_revenue and orders.customer_id is not null and orders.order_day <= as_of.as_of_date
),

first_orders as (
    select customer_id, min(order_month) as cohort_month
    from orders
    group by customer_id
),

cohorts as (
    select cohort_month, count(*) as cohort_customers
    from first_orders
    group by cohort_month
),

month_offsets as (
    select generated_number - 1 as months_since_acquisition
    from ({{ dbt.generate_series(600) }}) as series
),

grid as (
    select
        cohorts.cohort_month,
        cohorts.cohort_customers,
        month_offsets.months_since_acquisition,
        cast({{ dbt.dateadd('month', 'month_offsets.months_since_acquisition', 'cohorts.cohort_month') }} as date)
            as activity_month
    from cohorts
    cross join month_offsets
    cross join as_of
    where {{ dbt.dateadd('month', 'month_offsets.months_since_acquisition', 'cohorts.cohort_month') }}
        <= as_of.as_of_month
),

activity as (
    select
        first_orders.cohort_month,
        orders.order_month as activity_month,
        count(distinct orders.customer_id) as active_customers,
        sum(orders.revenue_amount) as revenue
    from orders
    inner join first_orders
        on first_orders.customer_id = orders.customer_id
    group by first_orders.cohort_month, orders.order_month
)

select
    grid.cohort_month,
    grid.months_since_acquisition,
    grid.activity_month,
    grid.cohort_customers,
    coalesce(activity.active_customers, 0) as active_customers,
    1.0 * coalesce(activity.active_customers, 0) / grid.cohort_customers as active_share,
    coalesce(activity.revenue, 0) as revenue,
    coalesce(activity.revenue, 0) / grid.cohort_customers as revenue_per_customer
from grid
left join activity
    on activity.cohort_month = grid.cohort_month
    and activity.activity_month = grid.activity_month
