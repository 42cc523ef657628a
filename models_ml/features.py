"""Point-in-time customer features: what the company knew about each customer at the end of a cut-off day.

Every feature is computed from the marts facts (``orders``, ``marketing_events``,
``support_tickets``, ``customers``) using only what was knowable on or before the cut-off day:

* rows are taken by the day they happened (``order_day``, ``occurred_on``, ``created_on``);
* the marts keep only the *latest* state of an order or a ticket. A state reached after the
  cut-off is not known at it, so an order whose last change (``updated_at``) is after the cut-off
  counts as merely placed, a ticket solved after it counts as open, and a satisfaction rating
  counts only when the ticket's last change is on or before the cut-off (the mart does not say
  when a rating arrived, only when the ticket last changed).

The result is one row per customer with at least one order on or before the cut-off (the scoring
population: a churn label needs a customer who has bought). It never reads ``customer_360``,
which joins the scores and would make a cycle.

Plain Python + DuckDB SQL (the facts stay in the warehouse; at a million customers pulling fifty
million marketing events into Python would cost gigabytes), no Dagster.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import polars as pl

__all__ = [
    "FEATURES",
    "FEATURE_SOURCES",
    "NUMERIC_FEATURES",
    "Feature",
    "available_sources",
    "build_features",
    "churn_labels",
    "last_data_day",
]


@dataclass(frozen=True)
class Feature:
    name: str
    description: str
    # The kind of source data the feature is computed from: orders, marketing, support, accounts.
    # A company without that data has no such feature (the models leave it out and say why).
    source: str = "orders"


FEATURES: tuple[Feature, ...] = (
    Feature("recency_days", "days since the last order"),
    Feature("usual_gap_days", "usual number of days between orders (first to last order / repeat orders)"),
    Feature("recency_vs_usual_gap", "days since the last order divided by the usual gap"),
    Feature("orders_lifetime", "orders placed so far"),
    Feature("orders_365d", "orders in the last 365 days"),
    Feature("orders_90d", "orders in the last 90 days"),
    Feature("orders_prev_90d", "orders in the 90 days before the last 90"),
    Feature("order_trend_90d", "orders in the last 90 days minus the 90 before"),
    Feature("average_order_value", "average order value"),
    Feature("revenue_365d", "revenue of the last 365 days (placed and shipped orders)"),
    Feature("returns_365d", "orders returned in the last 365 days"),
    Feature("cancellations_365d", "orders cancelled in the last 365 days"),
    Feature("discount_order_share", "share of orders placed with a discount"),
    Feature("average_discount_pct", "average discount per order (%)"),
    Feature("opens_90d", "marketing emails opened in the last 90 days", "marketing"),
    Feature("clicks_90d", "marketing clicks in the last 90 days", "marketing"),
    Feature("engagement_decayed", "opens and clicks weighted by recency (30-day half-life)", "marketing"),
    Feature("days_since_engagement", "days since the last open, click or conversion", "marketing"),
    Feature("is_unsubscribed", "unsubscribed from marketing", "marketing"),
    Feature("tickets_90d", "support tickets raised in the last 90 days", "support"),
    Feature("tickets_lifetime", "support tickets raised so far", "support"),
    Feature("open_tickets", "support tickets still open", "support"),
    Feature("bad_ratings_90d", "bad support ratings on tickets of the last 90 days", "support"),
    Feature("good_ratings_lifetime", "good support ratings so far", "support"),
    Feature("bad_ratings_lifetime", "bad support ratings so far", "support"),
    Feature("slow_tickets_lifetime", "tickets that took more than 5 days to resolve", "support"),
    Feature("median_resolution_hours", "median hours to resolve the customer's tickets", "support"),
    Feature("tenure_days", "days since the customer was first seen"),
    Feature("is_b2b", "business customer (B2B account)", "accounts"),
    Feature("payment_terms_days", "payment terms of the account (days)", "accounts"),
)
NUMERIC_FEATURES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURE_SOURCES: dict[str, str] = {f.name: f.source for f in FEATURES}
# What each kind of source data is, for the notes that say why a feature was left out.
SOURCE_DESCRIPTIONS = {
    "orders": "orders",
    "marketing": "marketing events",
    "support": "support tickets",
    "accounts": "accounts (B2B/B2C, payment terms)",
}

# Rows of the facts are visible at cut-off c when they happened on or before c. A ticket is solved
# more than five days after it was created: the simulator's (and most desks') "bad experience".
_SLOW_TICKET_HOURS = 120
_ENGAGEMENT_HALF_LIFE_DAYS = 30

_FEATURE_SQL = """
with params as (
    select cast($cutoff as date) as c, cast($cutoff as timestamp) + interval 1 day as c_end
),
orders as (
    -- Exact decimals: a sum of doubles depends on the order rows arrive in, and a rebuild reorders
    -- them; features must not change in their last bits when the data did not change.
    select o.customer_id, o.order_day,
        cast(o.total_amount as decimal(38, 6)) as total_amount, cast(o.discount_pct as decimal(38, 6)) as discount_pct,
        -- the status known at the cut-off: a later change is not known yet
        case when o.updated_at < p.c_end then o.status else 'placed' end as status_then
    from {schema}.orders o, params p
    where o.order_day <= p.c and o.customer_id is not null
),
order_days as (
    select customer_id, order_day, count(*) as n from orders group by 1, 2
),
order_stats as (
    select o.customer_id,
        count(*) as orders_lifetime,
        min(o.order_day) as first_order_day,
        max(o.order_day) as last_order_day,
        sum(case when o.order_day > p.c - 365 then 1 else 0 end) as orders_365d,
        sum(case when o.order_day > p.c - 90 then 1 else 0 end) as orders_90d,
        sum(case when o.order_day > p.c - 180 and o.order_day <= p.c - 90 then 1 else 0 end) as orders_prev_90d,
        avg(o.total_amount) as average_order_value,
        sum(case when o.order_day > p.c - 365 and o.status_then in ('placed', 'shipped')
            then o.total_amount else 0 end) as revenue_365d,
        sum(case when o.order_day > p.c - 365 and o.status_then = 'returned' then 1 else 0 end) as returns_365d,
        sum(case when o.order_day > p.c - 365 and o.status_then = 'cancelled' then 1 else 0 end) as cancellations_365d,
        avg(case when coalesce(o.discount_pct, 0) > 0 then 1 else 0 end) as discount_order_share,
        avg(coalesce(o.discount_pct, 0)) as average_discount_pct
    from orders o, params p
    group by o.customer_id
),
purchase_days as (
    select customer_id, count(*) as purchase_days from order_days group by 1
),
events as (
    select e.customer_id, e.event_type, e.occurred_on
    from {schema}.marketing_events e, params p
    where e.occurred_on <= p.c and e.customer_id is not null
),
event_stats as (
    select e.customer_id,
        sum(case when e.event_type = 'open' and e.occurred_on > p.c - 90 then 1 else 0 end) as opens_90d,
        sum(case when e.event_type = 'click' and e.occurred_on > p.c - 90 then 1 else 0 end) as clicks_90d,
        sum(case when e.event_type in ('open', 'click')
            then cast(pow(0.5, (p.c - e.occurred_on) / {half_life}) as decimal(38, 15)) else 0 end)
            as engagement_decayed,
        max(case when e.event_type in ('open', 'click', 'conversion') then e.occurred_on end) as last_engaged_day,
        max(case when e.event_type = 'unsubscribe' then 1 else 0 end) as unsubscribed_event
    from events e, params p
    group by e.customer_id
),
tickets as (
    select t.customer_id, t.created_on,
        case when t.solved_at < p.c_end then t.resolution_hours end as resolution_hours_then,
        case when t.updated_at < p.c_end then t.satisfaction_score end as rating_then
    from {schema}.support_tickets t, params p
    where t.created_on <= p.c and t.customer_id is not null
),
ticket_stats as (
    select t.customer_id,
        count(*) as tickets_lifetime,
        sum(case when t.created_on > p.c - 90 then 1 else 0 end) as tickets_90d,
        sum(case when t.resolution_hours_then is null then 1 else 0 end) as open_tickets,
        sum(case when t.rating_then = 'bad' and t.created_on > p.c - 90 then 1 else 0 end) as bad_ratings_90d,
        sum(case when t.rating_then = 'good' then 1 else 0 end) as good_ratings_lifetime,
        sum(case when t.rating_then = 'bad' then 1 else 0 end) as bad_ratings_lifetime,
        sum(case when t.resolution_hours_then > {slow_hours} then 1 else 0 end) as slow_tickets_lifetime,
        median(t.resolution_hours_then) as median_resolution_hours
    from tickets t, params p
    group by t.customer_id
)
select
    s.customer_id,
    cast(p.c - s.last_order_day as double) as recency_days,
    case when d.purchase_days > 1
        then cast(s.last_order_day - s.first_order_day as double) / (d.purchase_days - 1) end as usual_gap_days,
    case when d.purchase_days > 1 and s.last_order_day > s.first_order_day
        then (p.c - s.last_order_day) / (cast(s.last_order_day - s.first_order_day as double) / (d.purchase_days - 1))
    end as recency_vs_usual_gap,
    cast(s.orders_lifetime as double) as orders_lifetime,
    cast(s.orders_365d as double) as orders_365d,
    cast(s.orders_90d as double) as orders_90d,
    cast(s.orders_prev_90d as double) as orders_prev_90d,
    cast(s.orders_90d - s.orders_prev_90d as double) as order_trend_90d,
    s.average_order_value,
    s.revenue_365d,
    cast(s.returns_365d as double) as returns_365d,
    cast(s.cancellations_365d as double) as cancellations_365d,
    s.discount_order_share,
    s.average_discount_pct,
    cast(coalesce(e.opens_90d, 0) as double) as opens_90d,
    cast(coalesce(e.clicks_90d, 0) as double) as clicks_90d,
    coalesce(e.engagement_decayed, 0) as engagement_decayed,
    cast(p.c - e.last_engaged_day as double) as days_since_engagement,
    case when coalesce(e.unsubscribed_event, 0) = 1 or cu.unsubscribed_at < p.c_end then 1.0 else 0.0 end
        as is_unsubscribed,
    cast(coalesce(t.tickets_90d, 0) as double) as tickets_90d,
    cast(coalesce(t.tickets_lifetime, 0) as double) as tickets_lifetime,
    cast(coalesce(t.open_tickets, 0) as double) as open_tickets,
    cast(coalesce(t.bad_ratings_90d, 0) as double) as bad_ratings_90d,
    cast(coalesce(t.good_ratings_lifetime, 0) as double) as good_ratings_lifetime,
    cast(coalesce(t.bad_ratings_lifetime, 0) as double) as bad_ratings_lifetime,
    cast(coalesce(t.slow_tickets_lifetime, 0) as double) as slow_tickets_lifetime,
    t.median_resolution_hours,
    cast(p.c - least(s.first_order_day,
        coalesce(case when cu.first_seen_at < p.c_end then cast(cu.first_seen_at as date) end, s.first_order_day))
        as double) as tenure_days,
    case when cu.segment = 'B2B' then 1.0 else 0.0 end as is_b2b,
    cast(cu.payment_terms_days as double) as payment_terms_days
from order_stats s
cross join params p
join purchase_days d on d.customer_id = s.customer_id
left join {schema}.customers cu on cu.customer_id = s.customer_id
left join event_stats e on e.customer_id = s.customer_id
left join ticket_stats t on t.customer_id = s.customer_id
order by s.customer_id
"""


def _check_cutoff(cutoff: date) -> date:
    if not isinstance(cutoff, date):
        raise TypeError(f"cutoff must be a date, got {type(cutoff).__name__}")
    return cutoff


def build_features(con: duckdb.DuckDBPyConnection, cutoff: date, *, schema: str = "marts") -> pl.DataFrame:
    """One row per customer who ordered on or before ``cutoff``: ``customer_id`` + :data:`NUMERIC_FEATURES`."""
    cutoff = _check_cutoff(cutoff)
    sql = _FEATURE_SQL.format(schema=schema, half_life=float(_ENGAGEMENT_HALF_LIFE_DAYS), slow_hours=_SLOW_TICKET_HOURS)
    frame = con.sql(sql, params={"cutoff": cutoff}).pl()
    return frame.select("customer_id", *[pl.col(name).cast(pl.Float64) for name in NUMERIC_FEATURES])


def churn_labels(
    con: duckdb.DuckDBPyConnection, cutoff: date, horizon_days: int, *, schema: str = "marts"
) -> pl.DataFrame:
    """``customer_id``, ``churned`` (1 = no order of any status in the ``horizon_days`` after ``cutoff``).

    Covers the customers who ordered on or before ``cutoff``. Raises when the data do not reach
    the end of the label window (a label there would call everyone churned).
    """
    cutoff = _check_cutoff(cutoff)
    if horizon_days < 1:
        raise ValueError(f"horizon_days must be at least 1, got {horizon_days}")
    end = cutoff + timedelta(days=horizon_days)
    last = last_data_day(con, schema=schema)
    if last is None or last < end:
        raise ValueError(f"churn labels for cut-off {cutoff} need orders up to {end}; {schema}.orders ends on {last}")
    return (
        con.sql(
            f"""
        select customer_id,
            case when max(case when order_day > $c and order_day <= $end then 1 else 0 end) = 1
                then 0 else 1 end as churned
        from {schema}.orders
        where customer_id is not null and order_day <= $end
        group by customer_id
        having min(order_day) <= $c
        order by customer_id
        """,
            params={"c": cutoff, "end": end},
        )
        .pl()
        .with_columns(pl.col("churned").cast(pl.Int8))
    )


def available_sources(con: duckdb.DuckDBPyConnection, *, schema: str = "marts") -> dict[str, bool]:
    """Which kinds of source data this warehouse holds at all (features from absent ones are left out)."""

    def has_rows(sql: str) -> bool:
        return bool(con.execute(f"select count(*) > 0 from ({sql} limit 1)").fetchall()[0][0])

    return {
        "orders": has_rows(f"select 1 from {schema}.orders where customer_id is not null"),
        "marketing": has_rows(f"select 1 from {schema}.marketing_events where customer_id is not null"),
        "support": has_rows(f"select 1 from {schema}.support_tickets where customer_id is not null"),
        "accounts": has_rows(f"select 1 from {schema}.customers where account_id is not null"),
    }


def last_data_day(con: duckdb.DuckDBPyConnection, *, schema: str = "marts") -> date | None:
    """The last day with an order: the "today" of the warehouse's history."""
    return con.execute(f"select max(order_day) from {schema}.orders").fetchall()[0][0]
