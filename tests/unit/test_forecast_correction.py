"""The supervised correction of the 12-month forecast (models_ml.forecast) on a hand-made company whose
customers drop out after a bad support experience, which BG/NBD cannot see."""

from datetime import date, datetime, timedelta

import duckdb
import numpy as np
import polars as pl
import pytest

from models_ml import forecast
from models_ml.forecast import fit_forecast_correction, forecast_value
from models_ml.value import value_as_of

START = date(2022, 1, 1)
AS_OF = date(2023, 12, 31)
FUTURE_END = AS_OF + timedelta(days=365)


def _company(con: duckdb.DuckDBPyConnection, customers: int = 3000, seed: int = 11) -> float:
    """Marts of a company whose customers buy at a steady rate, drop out with a small chance after each
    purchase -- and with a large one after a bad support experience. Writes the orders up to AS_OF and
    returns the true order value of the 365 days after it."""
    rng = np.random.default_rng(seed)
    orders, tickets = [], []
    future_revenue = 0.0
    for i in range(customers):
        cid = f"C{i:05d}"
        rate = rng.gamma(2.0, 1 / 60)  # purchases per day
        mean_spend = rng.gamma(4.0, 20.0)
        base_dropout = rng.beta(1.0, 12.0)
        day = int(rng.integers(0, 500))
        bad_day = int(rng.integers(0, 1100)) if rng.random() < 0.5 else None
        while day <= (FUTURE_END - START).days:
            when = START + timedelta(days=day)
            amount = float(rng.gamma(4.0, mean_spend / 4.0))
            if when <= AS_OF:
                created = datetime.combine(when, datetime.min.time())
                orders.append((f"O{len(orders)}", cid, when, "shipped", 0.0, amount, created, created))
            else:
                future_revenue += amount
            dropout = 0.5 if bad_day is not None and bad_day <= day else base_dropout
            if rng.random() < dropout:
                break
            day += 1 + int(rng.exponential(1 / rate))
        if bad_day is not None and START + timedelta(days=bad_day) <= AS_OF:
            created = datetime.combine(START + timedelta(days=bad_day), datetime.min.time())
            solved = created + timedelta(hours=150)
            tickets.append((len(tickets), cid, created, created.date(), solved, solved, 150.0, "bad"))
    con.execute("create schema marts")
    con.register(
        "_orders",
        pl.DataFrame(
            orders,
            orient="row",
            schema=[
                "order_id",
                "customer_id",
                "order_day",
                "status",
                "discount_pct",
                "total_amount",
                "created_at",
                "updated_at",
            ],
        ),
    )
    con.execute("create table marts.orders as select * from _orders")
    con.register(
        "_tickets",
        pl.DataFrame(
            tickets,
            orient="row",
            schema=[
                "ticket_id",
                "customer_id",
                "created_at",
                "created_on",
                "updated_at",
                "solved_at",
                "resolution_hours",
                "satisfaction_score",
            ],
        ),
    )
    con.execute("create table marts.support_tickets as select * from _tickets")
    con.execute("""create table marts.marketing_events (event_id varchar, customer_id varchar, event_type varchar,
                   occurred_on date)""")
    con.execute("""create table marts.customers as
                   select customer_id, 'B2C' as segment, 0 as payment_terms_days,
                          cast(null as timestamp) as unsubscribed_at, cast(min(order_day) as timestamp) as first_seen_at
                   from marts.orders group by customer_id""")
    return future_revenue


@pytest.fixture(scope="module")
def company() -> tuple[duckdb.DuckDBPyConnection, float]:
    con = duckdb.connect()
    truth = _company(con)
    return con, truth


def test_correction_brings_the_forecast_closer_to_the_truth(company):
    con, truth = company
    result = forecast_value(con, AS_OF, "supervised_correction")
    assert result.method == "supervised_correction", result.note
    corrected = result.value["clv_12m"].sum()
    plain_error = abs(result.bgnbd_total / truth - 1)
    corrected_error = abs(corrected / truth - 1)
    # BG/NBD cannot see the bad experiences and over-forecasts; the correction learned a year earlier fixes most of it.
    assert result.bgnbd_total > 1.1 * truth
    assert corrected_error < plain_error / 2
    assert corrected_error < 0.1
    # Only clv_12m changes: the BG/NBD outputs stay as they are.
    _, plain = value_as_of(con, AS_OF)
    both = result.value.join(plain, on="customer_id", suffix="_plain")
    assert both.height == plain.height
    for col in ("p_alive", "expected_purchases_90d", "expected_purchases_365d", "expected_spend_per_order"):
        np.testing.assert_allclose(both[col].to_numpy(), both[f"{col}_plain"].to_numpy())
    assert (result.value["clv_12m"] >= 0).all()


def test_correction_lowers_the_value_of_customers_after_a_bad_experience(company):
    con, _ = company
    result = forecast_value(con, AS_OF, "supervised_correction")
    _, plain = value_as_of(con, AS_OF)
    bad = con.sql("select distinct customer_id, true as had_bad from marts.support_tickets").pl()
    ratio = (
        result.value.join(plain.select("customer_id", pl.col("clv_12m").alias("plain")), on="customer_id")
        .filter(pl.col("plain") > 0)
        .join(bad, on="customer_id", how="left")
        .with_columns(pl.col("had_bad").fill_null(False), factor=pl.col("clv_12m") / pl.col("plain"))
    )
    means = dict(ratio.group_by("had_bad").agg(pl.col("factor").mean()).iter_rows())
    assert means[True] < 0.7 * means[False]


def test_less_than_a_year_before_the_training_cutoff_falls_back_to_bgnbd(company):
    con, _ = company
    young_as_of = START + timedelta(days=300)
    assert isinstance(fit_forecast_correction(con, young_as_of), str)
    result = forecast_value(con, young_as_of, "supervised_correction")
    _, plain = value_as_of(con, young_as_of)
    assert result.method == "bgnbd" and "fell back" in result.note
    assert result.value["clv_12m"].sum() == pytest.approx(plain["clv_12m"].sum())


def test_a_correction_that_moves_the_total_too_far_is_not_trusted(company, monkeypatch):
    con, _ = company
    monkeypatch.setattr(forecast, "MAX_TOTAL_SHIFT", 0.01)  # the real correction moves this company's total ~15 %
    result = forecast_value(con, AS_OF, "supervised_correction")
    assert result.method == "bgnbd" and "apart" in result.note
    assert result.value["clv_12m"].sum() == pytest.approx(result.bgnbd_total)


def test_unknown_method_is_refused(company):
    con, _ = company
    with pytest.raises(ValueError, match="forecast method 'magic'"):
        forecast_value(con, AS_OF, "magic")
