{#- The funnel per campaign: customers sent -> opened -> clicked -> converted, the conversion value
    the marketing platform reports, and the revenue of orders a clicker placed within
    var('attribution_window_days') after their first click on the campaign. -#}
with campaigns as (
    select * from {{ ref('stg_marketing__campaigns') }}
),

events as (
    select * from {{ ref('marketing_events') }}
    where customer_id is not null
),

orders as (
    select * from {{ ref('orders') }}
    where is_revenue and customer_id is not null
),

funnel as (
    select
        campaign_id,
        count(distinct case when event_type = 'sent' then customer_id end) as customers_sent,
        count(distinct case when event_type = 'delivered' then customer_id end) as customers_delivered,
        count(distinct case when event_type = 'open' then customer_id end) as customers_opened,
        count(distinct case when event_type = 'click' then customer_id end) as customers_clicked,
        count(distinct case when event_type = 'conversion' then customer_id end) as customers_converted,
        count(distinct case when event_type = 'unsubscribe' then customer_id end) as customers_unsubscribed,
        count(distinct case when event_type = 'bounce' then customer_id end) as customers_bounced,
        sum(case when event_type = 'conversion' then conversion_value else 0 end) as conversion_value
    from events
    group by campaign_id
),

first_clicks as (
    select campaign_id, customer_id, min(occurred_at) as first_click_at
    from events
    where event_type = 'click'
    group by campaign_id, customer_id
),

attributed as (
    select
        first_clicks.campaign_id,
        count(distinct orders.order_id) as attributed_orders,
        sum(orders.revenue_amount) as attributed_revenue
    from first_clicks
    inner join orders
        on orders.customer_id = first_clicks.customer_id
        and orders.order_date >= first_clicks.first_click_at
        and orders.order_date < {{ dbt.dateadd('day', var('attribution_window_days'), 'first_clicks.first_click_at') }}
    group by first_clicks.campaign_id
),

campaign_ids as (
    select campaign_id from campaigns
    union
    select campaign_id from funnel where campaign_id is not null
)

select
    campaign_ids.campaign_id,
    campaigns.campaign_name,
    campaigns.channel,
    campaigns.offer,
    campaigns.discount_pct,
    campaigns.launched_at,
    coalesce(funnel.customers_sent, 0) as customers_sent,
    coalesce(funnel.customers_delivered, 0) as customers_delivered,
    coalesce(funnel.customers_opened, 0) as customers_opened,
    coalesce(funnel.customers_clicked, 0) as customers_clicked,
    coalesce(funnel.customers_converted, 0) as customers_converted,
    coalesce(funnel.customers_unsubscribed, 0) as customers_unsubscribed,
    coalesce(funnel.customers_bounced, 0) as customers_bounced,
    case when funnel.customers_sent > 0 then 1.0 * funnel.customers_opened / funnel.customers_sent end as open_rate,
    case when funnel.customers_sent > 0 then 1.0 * funnel.customers_clicked / funnel.customers_sent end as click_rate,
    case when funnel.customers_sent > 0 then 1.0 * funnel.customers_converted / funnel.customers_sent end
        as conversion_rate,
    coalesce(funnel.conversion_value, 0) as conversion_value,
    coalesce(attributed.attributed_orders, 0) as attributed_orders,
    coalesce(attributed.attributed_revenue, 0) as attributed_revenue,
    {{ var('attribution_window_days') }} as attribution_window_days
from campaign_ids
left join campaigns
    on campaigns.campaign_id = campaign_ids.campaign_id
left join funnel
    on funnel.campaign_id = campaign_ids.campaign_id
left join attributed
    on attributed.campaign_id = campaign_ids.campaign_id
