"""STAND-IN score tables for app tests while the scoring step is not in the build.

Writes the contract's tables (marts.customer_scores, marts.rep_actions, ml.model_registry,
ml.churn_calibration, ml.churn_drivers, ml.tier_benefits_cost) into a COPY of a built warehouse,
derived deterministically from customer_360 so the pages have something to show. Used only when
the real tables are absent; the app reads them by the contract's column names only, so the tests
run unchanged against the real ones.
"""

from __future__ import annotations

import duckdb

CONTRACT_TABLES = ("marts.customer_scores", "marts.rep_actions", "ml.model_registry", "ml.churn_calibration",
                   "ml.churn_drivers", "ml.tier_benefits_cost")


def has_real_scores(con: duckdb.DuckDBPyConnection) -> bool:
    found = {r[0] for r in con.execute(
        "SELECT table_schema || '.' || table_name FROM information_schema.tables").fetchall()}
    return all(t in found for t in CONTRACT_TABLES)


def write_standin_scores(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS ml")
    con.execute("""
        CREATE OR REPLACE TABLE marts.customer_scores AS
        WITH base AS (
            SELECT customer_id, as_of_date,
                   least(0.99, greatest(0.01, coalesce(days_since_last_order, 400) / 400.0)) AS churn_probability,
                   revenue_365d, orders_365d
            FROM marts.customer_360
        )
        SELECT customer_id, as_of_date AS scored_as_of, churn_probability,
               CASE WHEN churn_probability >= 0.6 THEN 'high' WHEN churn_probability >= 0.3 THEN 'medium'
                    ELSE 'low' END AS churn_band,
               CASE WHEN churn_probability >= 0.6 THEN 'long time since last order; fewer orders'
                    ELSE 'recent orders' END AS churn_reasons,
               1 - churn_probability AS p_alive,
               orders_365d / 4.0 AS expected_purchases_90d, orders_365d * 1.0 AS expected_purchases_365d,
               CASE WHEN orders_365d > 0 THEN revenue_365d / orders_365d ELSE 0 END AS expected_spend_per_order,
               revenue_365d * (1 - churn_probability) AS clv_12m,
               least(100, revenue_365d / 50) AS loyalty_score,
               CASE WHEN revenue_365d >= 3000 THEN 'Platinum' WHEN revenue_365d >= 1500 THEN 'Gold'
                    WHEN revenue_365d >= 500 THEN 'Silver' ELSE 'Bronze' END AS loyalty_tier,
               CASE WHEN revenue_365d >= 1500 THEN '5% discount; 60-day terms' ELSE 'none' END AS benefits,
               CASE WHEN revenue_365d >= 1500 THEN revenue_365d * 0.05 ELSE 0 END AS benefits_yearly_cost,
               CASE WHEN churn_probability >= 0.6 THEN 'call to win back' ELSE 'keep in touch' END AS next_action,
               CASE WHEN churn_probability >= 0.6 THEN 1 ELSE 3 END::INTEGER AS action_priority,
               'standin-1' AS model_version
        FROM base
    """)
    con.execute("""
        CREATE OR REPLACE TABLE marts.rep_actions AS
        SELECT c.owner_rep_id AS rep_id, c.owner_rep_name AS rep_name,
               row_number() OVER (PARTITION BY c.owner_rep_id ORDER BY s.action_priority,
                                  s.clv_12m * s.churn_probability DESC, c.customer_id)::INTEGER AS rank_in_book,
               c.customer_id, c.full_name AS customer_name, s.next_action, s.action_priority,
               s.clv_12m * s.churn_probability AS value_at_stake, s.churn_reasons AS reason,
               s.churn_probability, s.clv_12m, s.loyalty_tier
        FROM marts.customer_360 c JOIN marts.customer_scores s USING (customer_id)
        WHERE c.owner_rep_id IS NOT NULL
    """)
    con.execute("""
        CREATE OR REPLACE TABLE ml.model_registry AS
        SELECT 'standin-1' AS model_version, now() AS trained_at, DATE '2024-06-30' AS train_cutoff,
               180 AS horizon_days, 'current' AS status, '{"auc": 0.5}' AS metrics_json,
               '# Stand-in model\n\nNot a model: test data for the app.' AS card_markdown
    """)
    con.execute("""
        CREATE OR REPLACE TABLE ml.churn_calibration AS
        SELECT 'standin-1' AS model_version, decile, count(*) AS customers, avg(churn_probability) AS mean_predicted,
               avg(CASE WHEN churn_band = 'high' THEN 1.0 ELSE 0.0 END) AS observed_rate
        FROM (SELECT *, ntile(10) OVER (ORDER BY churn_probability) AS decile FROM marts.customer_scores)
        GROUP BY decile
    """)
    con.execute("""
        CREATE OR REPLACE TABLE ml.churn_drivers AS
        SELECT 'standin-1' AS model_version, * FROM (VALUES
            ('days_since_last_order', 'days since the last order', 0.6),
            ('orders_365d', 'orders in the last year', 0.3),
            ('tickets_90d', 'support tickets in 90 days', 0.1)) AS t(feature, description, importance)
    """)
    con.execute("""
        CREATE OR REPLACE TABLE ml.tier_benefits_cost AS
        SELECT loyalty_tier, count(*) AS customers, sum(benefits_yearly_cost) AS yearly_cost
        FROM marts.customer_scores GROUP BY loyalty_tier
    """)
