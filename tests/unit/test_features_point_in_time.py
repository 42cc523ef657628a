"""Point-in-time features: exact values on a hand-made history, and no leakage from after the cut-off."""

from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from models_ml.features import NUMERIC_FEATURES, build_features, churn_labels

CUTOFF = date(2024, 6, 30)


def _marts(con: duckdb.DuckDBPyConnection, seed: int = 3, customers: int = 60) -> None:
    """A random but plausible marts schema: orders, events and tickets before and after CUTOFF, with
    states (status, rating, solve time) that change after the rows were created."""
    rng = np.random.default_rng(seed)
    start = date(2024, 1, 1)
    ids = [f"C{i:03d}" for i in range(customers)]
    orders, events, tickets = [], [], []
    for cid in ids:
        for _ in range(rng.integers(1, 12)):
            day = start + timedelta(days=int(rng.integers(0, 300)))
            created = datetime.combine(day, datetime.min.time()) + timedelta(hours=int(rng.integers(0, 24)))
            updated = created + timedelta(days=float(rng.uniform(0, 20)))
            status = rng.choice(["placed", "shipped", "returned", "cancelled"], p=[0.1, 0.75, 0.08, 0.07])
            orders.append(
                (
                    f"O{len(orders)}",
                    cid,
                    day,
                    str(status),
                    float(rng.choice([0, 0, 5, 10])),
                    float(rng.gamma(4, 25)),
                    created,
                    updated,
                )
            )
        for _ in range(rng.integers(0, 15)):
            day = start + timedelta(days=int(rng.integers(0, 300)))
            kind = rng.choice(["sent", "open", "click", "conversion", "unsubscribe"], p=[0.5, 0.3, 0.12, 0.05, 0.03])
            events.append((f"E{len(events)}", cid, str(kind), day))
        for _ in range(rng.integers(0, 4)):
            created = datetime.combine(start + timedelta(days=int(rng.integers(0, 300))), datetime.min.time())
            solved = created + timedelta(hours=float(rng.uniform(1, 200)))
            updated = solved + timedelta(days=float(rng.uniform(0, 5)))
            rating = rng.choice(["good", "bad", "offered"])
            tickets.append(
                (
                    len(tickets),
                    cid,
                    created,
                    created.date(),
                    updated,
                    solved,
                    (solved - created).total_seconds() / 3600,
                    str(rating),
                )
            )
    con.execute("create schema marts")
    con.execute("""create table marts.orders (order_id varchar, customer_id varchar, order_day date, status varchar,
                   discount_pct double, total_amount double, created_at timestamp, updated_at timestamp)""")
    con.executemany("insert into marts.orders values (?, ?, ?, ?, ?, ?, ?, ?)", orders)
    con.execute("""create table marts.marketing_events (event_id varchar, customer_id varchar, event_type varchar,
                   occurred_on date)""")
    con.executemany("insert into marts.marketing_events values (?, ?, ?, ?)", events)
    con.execute("""create table marts.support_tickets (ticket_id bigint, customer_id varchar, created_at timestamp,
                   created_on date, updated_at timestamp, solved_at timestamp, resolution_hours double,
                   satisfaction_score varchar)""")
    con.executemany("insert into marts.support_tickets values (?, ?, ?, ?, ?, ?, ?, ?)", tickets)
    con.execute("""create table marts.customers as
                   select customer_id, case when hash(customer_id) % 4 = 0 then 'B2B' else 'B2C' end as segment,
                          case when hash(customer_id) % 4 = 0 then 30 else 0 end as payment_terms_days,
                          cast(null as timestamp) as unsubscribed_at, cast('2024-01-01' as timestamp) as first_seen_at
                   from (select distinct customer_id from marts.orders)""")


def _forget_the_future(con: duckdb.DuckDBPyConnection, cutoff: date) -> None:
    """Delete every row after the cut-off and scramble every state reached after it."""
    end = datetime.combine(cutoff + timedelta(days=1), datetime.min.time())
    con.execute("delete from marts.orders where order_day > ?", [cutoff])
    con.execute("delete from marts.marketing_events where occurred_on > ?", [cutoff])
    con.execute("delete from marts.support_tickets where created_on > ?", [cutoff])
    # Later states are unknown at the cut-off: replace them with something else entirely.
    con.execute(
        "update marts.orders set status = 'cancelled', updated_at = updated_at + interval 3 day where updated_at >= ?",
        [end],
    )
    con.execute(
        "update marts.support_tickets set satisfaction_score = 'bad', resolution_hours = 999, "
        "solved_at = solved_at + interval 30 day where updated_at >= ? and solved_at >= ?",
        [end, end],
    )
    con.execute("update marts.support_tickets set satisfaction_score = 'good' where updated_at >= ?", [end])


def test_features_at_a_cutoff_ignore_everything_after_it():
    con = duckdb.connect()
    _marts(con)
    before = build_features(con, CUTOFF)
    assert before.height > 30
    _forget_the_future(con, CUTOFF)
    after = build_features(con, CUTOFF)
    assert_frame_equal(before, after)


def test_the_leakage_check_would_notice_a_change_before_the_cutoff():
    # Guards the test above: the same comparison fails when a row *before* the cut-off changes.
    con = duckdb.connect()
    _marts(con)
    before = build_features(con, CUTOFF)
    con.execute("update marts.orders set total_amount = total_amount + 100 where order_day <= ?", [CUTOFF])
    with pytest.raises(AssertionError):
        assert_frame_equal(before, build_features(con, CUTOFF))


def test_feature_values_of_one_customer():
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute("""create table marts.orders as select * from (values
        ('o1', 'A', date '2024-01-10', 'shipped', 0.0, 100.0, timestamp '2024-01-10', timestamp '2024-01-12'),
        ('o2', 'A', date '2024-03-10', 'shipped', 10.0, 50.0, timestamp '2024-03-10', timestamp '2024-03-12'),
        ('o3', 'A', date '2024-05-09', 'returned', 0.0, 30.0, timestamp '2024-05-09', timestamp '2024-07-20'),
        ('o4', 'A', date '2024-08-01', 'shipped', 0.0, 70.0, timestamp '2024-08-01', timestamp '2024-08-02'))
        t(order_id, customer_id, order_day, status, discount_pct, total_amount, created_at, updated_at)""")
    con.execute("""create table marts.marketing_events as select * from (values
        ('e1', 'A', 'open', date '2024-06-30'), ('e2', 'A', 'click', date '2024-05-31'),
        ('e3', 'A', 'unsubscribe', date '2024-07-15'))
        t(event_id, customer_id, event_type, occurred_on)""")
    con.execute("""create table marts.support_tickets as select * from (values
        (1, 'A', timestamp '2024-06-01', date '2024-06-01', timestamp '2024-06-20', timestamp '2024-06-08', 168.0, 'bad'))
        t(ticket_id, customer_id, created_at, created_on, updated_at, solved_at, resolution_hours, satisfaction_score)""")
    con.execute("""create table marts.customers as select 'A' as customer_id, 'B2B' as segment, 30 as payment_terms_days,
        cast(null as timestamp) as unsubscribed_at, timestamp '2023-12-01' as first_seen_at""")
    row = build_features(con, CUTOFF).row(0, named=True)
    assert row["customer_id"] == "A"
    assert row["recency_days"] == (CUTOFF - date(2024, 5, 9)).days  # 52
    assert row["usual_gap_days"] == pytest.approx((date(2024, 5, 9) - date(2024, 1, 10)).days / 2)
    assert row["orders_lifetime"] == 3 and row["orders_90d"] == 1 and row["orders_prev_90d"] == 2
    assert row["order_trend_90d"] == -1
    # o3 was returned after the cut-off: at the cut-off it was a placed order, revenue and no return.
    assert row["returns_365d"] == 0 and row["revenue_365d"] == 180.0
    assert row["discount_order_share"] == pytest.approx(1 / 3)
    assert row["opens_90d"] == 1 and row["clicks_90d"] == 1 and row["is_unsubscribed"] == 0
    assert row["engagement_decayed"] == pytest.approx(1 + 0.5)  # open today, click 30 days ago
    assert row["bad_ratings_90d"] == 1 and row["slow_tickets_lifetime"] == 1
    assert row["median_resolution_hours"] == 168.0
    assert row["tenure_days"] == (CUTOFF - date(2023, 12, 1)).days
    assert row["is_b2b"] == 1 and row["payment_terms_days"] == 30
    assert set(NUMERIC_FEATURES) <= set(build_features(con, CUTOFF).columns)


def test_labels_need_data_to_the_end_of_the_window():
    con = duckdb.connect()
    _marts(con)
    labels = churn_labels(con, CUTOFF, 30)
    assert set(labels["churned"].unique()) <= {0, 1}
    bought_after = con.sql(
        "select distinct customer_id from marts.orders where order_day > $1 and order_day <= $2",
        params=[CUTOFF, CUTOFF + timedelta(days=30)],
    ).pl()["customer_id"]
    assert labels.filter(pl.col("customer_id").is_in(bought_after.implode()))["churned"].sum() == 0
    with pytest.raises(ValueError, match="need orders up to"):
        churn_labels(con, date(2024, 10, 1), 90)
