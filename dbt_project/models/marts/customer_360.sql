{#- One row per customer: who they are, what they bought, how they engage with marketing and
    support, as of int_reporting_dates.as_of_date, with their scores (churn, value, loyalty, action)
    from customer_scores, which serves what the Python scoring step wrote to ml.customer_scores.
    Before the first scoring run that table is empty: the score columns are then null. -#}
with customers as (
    select * from {{ ref('customers') }}
),

as_of as (
    select as_of_date from {{ ref('int_reporting_dates') }}
),

orders as (
    select orders.*
    from {{ ref('orders') }} as orders
    cross join as_of
    where orders.order_day <= as_of.as_of_date
),

order_lines as (
    select order_lines.*
    from {{ ref('order_lines') }} as order_lines
    cross join as_of
    where order_lines.order_day <= as_of.as_of_date
),

events as (
    select events.*
    from {{ ref('marketing_events') }} as events
    cross join as_of
    where events.occurred_on <= as_of.as_of_date
),

tickets as (
    select tickets.*
    from {{ ref('support_tickets') }} as tickets
    cross join as_of
    where tickets.created_on <= as_of.as_of_date
),

order_stats as (
    select
        orders.customer_id,
        min(case when orders.is_revenue then orders.order_date end) as first_order_at,
        max(case when orders.is_revenue then orders.order_date end) as last_order_at,
        sum(case when orders.is_revenue then 1 else 0 end) as orders_lifetime,
        sum(orders.revenue_amount) as revenue_lifetime,
        sum(case when orders.is_revenue and orders.order_day > {{ dbt.dateadd('day', -90, 'as_of.as_of_date') }}
            then 1 else 0 end) as orders_90d,
        sum(case when orders.order_day > {{ dbt.dateadd('day', -90, 'as_of.as_of_date') }}
            then orders.revenue_amount else 0 end) as revenue_90d,
        sum(case when orders.is_revenue and orders.order_day > {{ dbt.dateadd('day', -365, 'as_of.as_of_date') }}
            then 1 else 0 end) as orders_365d,
        sum(case when orders.order_day > {{ dbt.dateadd('day', -365, 'as_of.as_of_date') }}
            then orders.revenue_amount else 0 end) as revenue_365d,
        sum(case when orders.is_returned then 1 else 0 end) as returns_lifetime,
        sum(case when orders.is_returned then orders.total_amount else 0 end) as returned_amount_lifetime
    from orders
    cross join as_of
    where orders.customer_id is not null
    group by orders.customer_id
),

category_spend as (
    select
        customer_id,
        category,
        sum(line_amount) as spend
    from order_lines
    where is_revenue and customer_id is not null
    group by customer_id, category
),

favourite_category as (
    select customer_id, category as favourite_category
    from (
        select
            category_spend.*,
            row_number() over (partition by customer_id order by spend desc, category) as category_rank
        from category_spend
    ) as ranked
    where category_rank = 1
),

event_stats as (
    select
        events.customer_id,
        {% for days in [30, 90] %}
        {% for kind, types in [('sends', "'sent'"), ('opens', "'open'"), ('clicks', "'click'")] %}
        sum(case when events.event_type = {{ types }}
                  and events.occurred_on > {{ dbt.dateadd('day', -days, 'as_of.as_of_date') }}
            then 1 else 0 end) as {{ kind }}_{{ days }}d,
        {% endfor %}
        {% endfor %}
        sum(case when events.event_type = 'conversion' then 1 else 0 end) as conversions_lifetime,
        max(case when events.event_type in ('open', 'click', 'conversion') then events.occurred_at end)
            as last_engagement_at,
        max(case when events.event_type = 'unsubscribe' then events.occurred_at end) as last_unsubscribe_event_at
    from events
    cross join as_of
    where events.customer_id is not null
    group by events.customer_id
),

ticket_stats as (
    select
        tickets.customer_id,
        sum(case when tickets.created_on > {{ dbt.dateadd('day', -90, 'as_of.as_of_date') }} then 1 else 0 end)
            as tickets_90d,
        count(*) as tickets_lifetime,
        sum(case when tickets.is_open then 1 else 0 end) as open_tickets,
        {{ median('tickets.resolution_hours') }} as median_resolution_hours,
        sum(case when tickets.satisfaction_score = 'bad' then 1 else 0 end) as bad_ratings,
        sum(case when tickets.satisfaction_score in ('good', 'bad') then 1 else 0 end) as ratings
    from tickets
    cross join as_of
    where tickets.customer_id is not null
    group by tickets.customer_id
),

scores as (
    select customer_id, churn_probability, churn_band, churn_reasons, p_alive, clv_12m,
        loyalty_score, loyalty_tier, next_action
    from {{ ref('customer_scores') }}
),

last_rating as (
    select customer_id, satisfaction_score as last_satisfaction
    from (
        select
            tickets.*,
            row_number() over (partition by customer_id order by updated_at desc, ticket_id desc) as rating_rank
        from tickets
        where satisfaction_score in ('good', 'bad') and customer_id is not null
    ) as ranked
    where rating_rank = 1
)

select
    customers.customer_id,
    as_of.as_of_date,
    -- who
    customers.full_name,
    customers.first_name,
    customers.last_name,
    customers.email,
    customers.phone,
    customers.city,
    customers.postcode,
    customers.segment,
    customers.account_id,
    customers.account_name,
    customers.owner_rep_id,
    customers.owner_rep_name,
    customers.email_consent,
    customers.email_consent_at,
    customers.sms_consent,
    customers.sms_consent_at,
    -- orders
    order_stats.first_order_at,
    order_stats.last_order_at,
    cast(coalesce(order_stats.orders_lifetime, 0) as {{ dbt.type_bigint() }}) as orders_lifetime,
    coalesce(order_stats.revenue_lifetime, 0) as revenue_lifetime,
    cast(coalesce(order_stats.orders_90d, 0) as {{ dbt.type_bigint() }}) as orders_90d,
    coalesce(order_stats.revenue_90d, 0) as revenue_90d,
    cast(coalesce(order_stats.orders_365d, 0) as {{ dbt.type_bigint() }}) as orders_365d,
    coalesce(order_stats.revenue_365d, 0) as revenue_365d,
    case when order_stats.orders_lifetime > 0
        then order_stats.revenue_lifetime / order_stats.orders_lifetime end as average_order_value,
    cast(coalesce(order_stats.returns_lifetime, 0) as {{ dbt.type_bigint() }}) as returns_lifetime,
    coalesce(order_stats.returned_amount_lifetime, 0) as returned_amount_lifetime,
    favourite_category.favourite_category,
    case when order_stats.last_order_at is not null
        then {{ dbt.datediff('cast(order_stats.last_order_at as date)', 'as_of.as_of_date', 'day') }}
    end as days_since_last_order,
    -- marketing
    cast(coalesce(event_stats.sends_30d, 0) as {{ dbt.type_bigint() }}) as sends_30d,
    cast(coalesce(event_stats.opens_30d, 0) as {{ dbt.type_bigint() }}) as opens_30d,
    cast(coalesce(event_stats.clicks_30d, 0) as {{ dbt.type_bigint() }}) as clicks_30d,
    cast(coalesce(event_stats.sends_90d, 0) as {{ dbt.type_bigint() }}) as sends_90d,
    cast(coalesce(event_stats.opens_90d, 0) as {{ dbt.type_bigint() }}) as opens_90d,
    cast(coalesce(event_stats.clicks_90d, 0) as {{ dbt.type_bigint() }}) as clicks_90d,
    cast(coalesce(event_stats.conversions_lifetime, 0) as {{ dbt.type_bigint() }}) as conversions_lifetime,
    event_stats.last_engagement_at,
    (customers.unsubscribed_at is not null or event_stats.last_unsubscribe_event_at is not null) as is_unsubscribed,
    -- support
    cast(coalesce(ticket_stats.tickets_90d, 0) as {{ dbt.type_bigint() }}) as tickets_90d,
    cast(coalesce(ticket_stats.tickets_lifetime, 0) as {{ dbt.type_bigint() }}) as tickets_lifetime,
    cast(coalesce(ticket_stats.open_tickets, 0) as {{ dbt.type_bigint() }}) as open_tickets,
    ticket_stats.median_resolution_hours,
    last_rating.last_satisfaction,
    case when ticket_stats.ratings > 0
        then 1.0 * ticket_stats.bad_ratings / ticket_stats.ratings end as bad_rating_share,
    -- tenure: from the first time any system saw the customer (or their first order, if earlier)
    case
        when customers.first_seen_at is null and order_stats.first_order_at is null then null
        else {{ dbt.datediff(
            'cast(case when order_stats.first_order_at is null or customers.first_seen_at < order_stats.first_order_at '
            ~ 'then customers.first_seen_at else order_stats.first_order_at end as date)',
            'as_of.as_of_date', 'day') }}
    end as tenure_days,
    -- scores (null when the customer is not scored: no order yet, or no scoring run)
    scores.churn_probability,
    scores.churn_band,
    scores.churn_reasons,
    scores.p_alive,
    scores.clv_12m,
    scores.loyalty_score,
    scores.loyalty_tier,
    scores.next_action
from customers
cross join as_of
left join order_stats
    on order_stats.customer_id = customers.customer_id
left join favourite_category
    on favourite_category.customer_id = customers.customer_id
left join event_stats
    on event_stats.customer_id = customers.customer_id
left join ticket_stats
    on ticket_stats.customer_id = customers.customer_id
left join last_rating
    on last_rating.customer_id = customers.customer_id
left join scores
    on scores.customer_id = customers.customer_id
