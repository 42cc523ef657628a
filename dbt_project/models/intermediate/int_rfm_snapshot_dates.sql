{#- RFM snapshot dates: every month end from the first order's month up to the as-of date, plus
    the as-of date itself (flagged is_month_end when it is one). -#}
with as_of as (
    select as_of_date from {{ ref('int_reporting_dates') }}
),

first_order as (
    select min(order_day) as first_order_day from {{ ref('stg_sales__orders') }}
),

month_offsets as (
    {{ dbt.generate_series(600) }}
),

month_ends as (
    select
        cast({{ dbt.last_day(dbt.dateadd('month', 'month_offsets.generated_number - 1',
                                           dbt.date_trunc('month', 'first_order.first_order_day')), 'month') }} as date)
            as snapshot_date
    from month_offsets
    cross join first_order
    where first_order.first_order_day is not null
),

candidates as (
    select month_ends.snapshot_date
    from month_ends
    cross join as_of
    where month_ends.snapshot_date <= as_of.as_of_date
    union
    select as_of_date as snapshot_date
    from as_of
    where exists (select 1 from first_order where first_order_day is not null)
)

select
    snapshot_date,
    snapshot_date = cast({{ dbt.last_day('snapshot_date', 'month') }} as date) as is_month_end,
    snapshot_date = (select as_of_date from as_of) as is_latest
from candidates
