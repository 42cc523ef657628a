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
        ("marts.orders",),
        """
        SELECT order_month AS month, sum(revenue_amount) AS revenue,
               count(DISTINCT customer_id) FILTER (WHERE is_revenue) AS active_customers
        FROM marts.orders
        WHERE order_month IS NOT NULL
        GROUP BY order_month""",
    ),
    Aggregate(
        "conversion_by_segment",
        ("marts.marketing_events", "marts.customer_rfm"),
        """
        WITH per_customer AS (
            SELECT customer_id, bool_or(event_type = 'sent') AS sent, bool_or(event_type = 'conversion') AS converted
            FROM marts.marketing_events WHERE customer_id IS NOT NULL GROUP BY customer_id
        )
        SELECT coalesce(r.segment, 'No orders') AS segment, count(*) FILTER (WHERE p.sent) AS customers_sent,
               count(*) FILTER (WHERE p.sent AND p.converted) AS customers_converted,
               count(*) FILTER (WHERE p.sent AND p.converted) / nullif(count(*) FILTER (WHERE p.sent), 0)
                   AS conversion_rate
        FROM per_customer p LEFT JOIN marts.customer_rfm r ON r.customer_id = p.customer_id
        GROUP BY ALL""",
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
