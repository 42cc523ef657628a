{{ config(meta={'dagster': {'ref': {'name': 'customer_rfm'}}}) }}
-- The latest snapshot in the history is the same RFM as customer_rfm (same customers, scores, segments).
with latest as (
    select history.*
    from {{ ref('customer_rfm_history') }} as history
    inner join {{ ref('int_reporting_dates') }} as as_of
        on history.snapshot_date = as_of.as_of_date
),

current_rfm as (
    select * from {{ ref('customer_rfm') }}
)

select coalesce(latest.customer_id, current_rfm.customer_id) as customer_id
from latest
full outer join current_rfm
    on current_rfm.customer_id = latest.customer_id
where latest.customer_id is null
    or current_rfm.customer_id is null
    or latest.r_score <> current_rfm.r_score
    or latest.f_score <> current_rfm.f_score
    or latest.m_score <> current_rfm.m_score
    or latest.segment <> current_rfm.segment
