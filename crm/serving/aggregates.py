"""Dashboard aggregates computed once per snapshot, when it is published.

Some dashboard figures scan the biggest facts (10M orders, 50M marketing events at the large
scale) and take a second or more each; a snapshot never changes, so they are computed once into
``serving.<name>`` and every page render reads a few rows. Each entry names the tables it needs:
an aggregate whose inputs are absent (an older or partial build) is skipped, and the app shows
its empty state.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

# The KPI comparison window: the last N days up to the as-of date against the N days before.
KPI_PERIOD_DAYS = 90


@dataclass(frozen=True)
class Aggregate:
    name: str
    needs: tuple[str, ...]
    sql: str


AGGREGATES = (
    Aggregate(
        "order_kpis",
        ("marts.orders", "marts.customer_360"),
        f"""
        WITH as_of AS (SELECT max(as_of_date) AS day FROM marts.customer_360),
        periods AS (
            SELECT customer_id, revenue_amount, is_revenue,
                   CASE WHEN order_day > as_of.day - {KPI_PERIOD_DAYS} THEN 'current' ELSE 'previous' END AS period
            FROM marts.orders, as_of
            WHERE order_day <= as_of.day AND order_day > as_of.day - 2 * {KPI_PERIOD_DAYS}
        )
        SELECT
            {KPI_PERIOD_DAYS} AS period_days,
            count(DISTINCT customer_id) FILTER (WHERE period = 'current' AND is_revenue) AS active_current,
            count(DISTINCT customer_id) FILTER (WHERE period = 'previous' AND is_revenue) AS active_previous,
            coalesce(sum(revenue_amount) FILTER (WHERE period = 'current'), 0) AS revenue_current,
            coalesce(sum(revenue_amount) FILTER (WHERE period = 'previous'), 0) AS revenue_previous,
            count(*) FILTER (WHERE period = 'current' AND is_revenue) AS orders_current,
            count(*) FILTER (WHERE period = 'previous' AND is_revenue) AS orders_previous
        FROM periods""",
    ),
    Aggregate(
        "monthly_activity",
        ("marts.orders", "marts.customer_360"),
        # covered_from / covered_to: the days of the month the data covers. A month the history starts
        # in the middle of, or the open month of the as-of date, is partial and must be drawn so.
        """
        WITH as_of AS (SELECT max(as_of_date) AS day FROM marts.customer_360),
        bounds AS (SELECT min(order_day) AS first_day FROM marts.orders)
        SELECT order_month AS month, sum(revenue_amount) AS revenue,
               count(DISTINCT customer_id) FILTER (WHERE is_revenue) AS active_customers,
               count(*) FILTER (WHERE is_revenue) AS orders,
               greatest(order_month, bounds.first_day) AS covered_from,
               least(last_day(order_month), as_of.day) AS covered_to
        FROM marts.orders, as_of, bounds
        WHERE order_month IS NOT NULL AND order_day <= as_of.day
        GROUP BY order_month, bounds.first_day, as_of.day""",
    ),
    Aggregate(
        "tickets_by_month",
        ("marts.support_tickets", "marts.customer_360"),
        """
        WITH as_of AS (SELECT max(as_of_date) AS day FROM marts.customer_360),
        bounds AS (SELECT min(created_on) AS first_day FROM marts.support_tickets)
        SELECT date_trunc('month', created_on)::DATE AS month, count(*) AS tickets,
               median(resolution_hours) AS median_resolution_hours,
               count(*) FILTER (WHERE satisfaction_score = 'good')
                   / nullif(count(*) FILTER (WHERE satisfaction_score IN ('good', 'bad')), 0) AS satisfied_share,
               greatest(date_trunc('month', created_on)::DATE, bounds.first_day) AS covered_from,
               least(last_day(created_on), as_of.day) AS covered_to
        FROM marts.support_tickets, as_of, bounds
        WHERE created_on IS NOT NULL AND created_on <= as_of.day
        GROUP BY ALL""",
    ),
    Aggregate(
        "conversion_by_segment",
        ("marts.marketing_events", "marts.customer_rfm_history"),
        # The segment a customer was in when the campaign reached them (the RFM snapshot at the end of the
        # month before the first send), not today's segment, which the conversion itself may have changed.
        # One pass over the events, then an equality join on that month end (the history is monthly).
        """
        WITH pairs AS (
            SELECT customer_id, campaign_id,
                   min(occurred_on) FILTER (WHERE event_type = 'sent') AS sent_on,
                   bool_or(event_type = 'conversion') AS converted
            FROM marts.marketing_events
            WHERE customer_id IS NOT NULL AND campaign_id IS NOT NULL AND event_type IN ('sent', 'conversion')
            GROUP BY customer_id, campaign_id
        ),
        history AS (
            SELECT customer_id, snapshot_date, segment FROM marts.customer_rfm_history WHERE is_month_end
        )
        SELECT coalesce(h.segment, 'No orders yet') AS segment, count(*) AS sends,
               count(*) FILTER (WHERE p.converted) AS conversions,
               count(DISTINCT p.customer_id) AS customers_sent,
               count(*) FILTER (WHERE p.converted) / count(*) AS conversion_rate
        FROM pairs p
        LEFT JOIN history h
          ON h.customer_id = p.customer_id
         AND h.snapshot_date = CAST(date_trunc('month', p.sent_on) - INTERVAL 1 DAY AS DATE)
        WHERE p.sent_on IS NOT NULL
        GROUP BY 1""",
    ),
    Aggregate(
        "identity_summary",
        ("identity.records",),
        """
        SELECT source, count(*) AS records, count(DISTINCT customer_id) AS customers,
               count(*) FILTER (WHERE match_rule IN ('email', 'phone')) AS matched_deterministically,
               count(*) FILTER (WHERE match_rule = 'probabilistic') AS matched_probabilistically
        FROM identity.records GROUP BY ALL""",
    ),
    Aggregate(
        "identity_cluster_sizes",
        ("identity.records",),
        # How many source records each customer was built from: 1 = seen once, 2+ = records joined.
        """
        WITH sizes AS (SELECT customer_id, count(*) AS records FROM identity.records
                       WHERE customer_id IS NOT NULL GROUP BY customer_id)
        SELECT least(records, 10) AS records, count(*) AS customers, max(records) AS largest
        FROM sizes GROUP BY 1""",
    ),
    Aggregate(
        "identity_largest_clusters",
        ("identity.records",),
        """
        SELECT customer_id, count(*) AS records, count(DISTINCT source) AS sources,
               count(DISTINCT email) AS emails, count(DISTINCT phone_e164) AS phones,
               count(DISTINCT lower(last_name)) AS surnames
        FROM identity.records WHERE customer_id IS NOT NULL
        GROUP BY customer_id ORDER BY records DESC, customer_id LIMIT 20""",
    ),
)


def write_aggregates(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create serving.<name> for every aggregate whose inputs exist; returns the names written."""
    present = {
        r[0] for r in con.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables").fetchall()
    }
    con.execute("CREATE SCHEMA IF NOT EXISTS serving")
    written = []
    for aggregate in AGGREGATES:
        if all(table in present for table in aggregate.needs):
            con.execute(f"CREATE OR REPLACE TABLE serving.{aggregate.name} AS {aggregate.sql}")
            written.append(aggregate.name)
    return written
