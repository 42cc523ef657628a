"""Backtest of the churn model against its baselines, and the oracle ceiling from the simulator's truth.

Time-based split on one history ending at T (the last day with data), horizon H:
train at T-2H with labels in (T-2H, T-H]; evaluate at T-H with labels in (T-H, T]. The baselines see
the same evaluation customers: *recency* (days since the last order, higher = riskier) and
*BG/NBD* (1 - probability alive, fitted on the orders up to T-H).

The *oracle* knows each person's latent state: a person who dropped out on or before the cut-off
will never buy again (P(no order in H) = 1); a live one buys as a Poisson process with their true
rate, so P(no order in H) = exp(-rate x H). A customer that identity resolution formed from
several persons stays without an order only if all of them do (product). Seasonality and campaign
lift scale every live person's rate alike within one window, so they do not change the ranking much;
no model of the visible data can rank better than this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from models_ml.churn import (
    ChurnModel,
    ChurnModelParams,
    calibration_by_decile,
    classification_metrics,
    train_churn_model,
)
from models_ml.features import build_features, churn_labels
from models_ml.value import bgnbd_p_alive, order_log, rfm_summary

__all__ = [
    "Backtest",
    "customer_persons",
    "known_rates_scores",
    "oracle_scores",
    "revenue_forecast_check",
    "run_backtest",
]


@dataclass
class Backtest:
    as_of: date
    horizon_days: int
    train_cutoff: date
    eval_cutoff: date
    model: ChurnModel
    evaluation: pl.DataFrame  # customer_id, churned, churn_probability, recency_days, bgnbd_churn
    # Features at the evaluation cut-off with their labels: exactly the training set of the model
    # published tonight (cut-off as_of - H, labels to as_of), so training does not compute them again.
    labelled_eval_features: pl.DataFrame | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    calibration: pl.DataFrame | None = None
    notes: list[str] = field(default_factory=list)  # what fell back, for the model card


def run_backtest(
    con: duckdb.DuckDBPyConnection, as_of: date, horizon_days: int, params: ChurnModelParams, *, schema: str = "marts"
) -> Backtest:
    """Train at as_of-2H, evaluate at as_of-H; metrics for the model and both baselines."""
    h = timedelta(days=horizon_days)
    train_cutoff, eval_cutoff = as_of - 2 * h, as_of - h
    train = build_features(con, train_cutoff, schema=schema)
    model = train_churn_model(train, churn_labels(con, train_cutoff, horizon_days, schema=schema), params)
    evaluate = build_features(con, eval_cutoff, schema=schema).join(
        churn_labels(con, eval_cutoff, horizon_days, schema=schema),
        on="customer_id",
        how="inner",
        maintain_order="left",
    )
    summary = rfm_summary(order_log(con, eval_cutoff, schema=schema), eval_cutoff)
    notes: list[str] = []
    frame = (
        evaluate.select("customer_id", "churned", "recency_days")
        .with_columns(churn_probability=pl.Series(model.predict(evaluate)))
        .join(
            bgnbd_p_alive(summary, notes).select("customer_id", (1 - pl.col("p_alive")).alias("bgnbd_churn")),
            on="customer_id",
            how="left",
            maintain_order="left",
        )
    )
    y = frame["churned"].to_numpy()
    bt = Backtest(as_of, horizon_days, train_cutoff, eval_cutoff, model, frame, labelled_eval_features=evaluate)
    bt.notes = notes
    bt.metrics["model"] = classification_metrics(y, frame["churn_probability"].to_numpy())
    bt.metrics["baseline_recency"] = classification_metrics(y, frame["recency_days"].to_numpy(), probabilities=False)
    bt.metrics["baseline_bgnbd_p_alive"] = classification_metrics(y, frame["bgnbd_churn"].fill_null(0.5).to_numpy())
    bt.calibration = calibration_by_decile(y, frame["churn_probability"].to_numpy())
    return bt


def customer_persons(con: duckdb.DuckDBPyConnection, ground_truth: Path) -> pl.DataFrame:
    """customer_id -> person_id through identity.records and the truth's record_map (sales contacts,
    the records orders hang on, plus marketing and support records)."""
    path = (ground_truth / "record_map.parquet").as_posix()
    return con.sql(
        f"""
        select distinct r.customer_id, cast(t.person_id as bigint) as person_id
        from identity.records r
        join read_parquet('{path}') t
          on t.source = r.source
         and (case when t.source = 'marketing_contacts' then lower(trim(cast(t.source_key as varchar)))
                   else cast(t.source_key as varchar) end) = r.source_key
        """
    ).pl()


def oracle_scores(con: duckdb.DuckDBPyConnection, ground_truth: Path, cutoff: date, horizon_days: int) -> pl.DataFrame:
    """customer_id, oracle_churn = P(no order in the H days after cutoff | true latent state)."""
    persons = pl.read_parquet(
        ground_truth / "persons.parquet", columns=["person_id", "purchase_rate", "true_dropout_at"]
    )
    cutoff_end = np.datetime64(cutoff + timedelta(days=1), "ms")
    persons = persons.with_columns(
        p_no_order=pl.when(pl.col("true_dropout_at").is_not_null() & (pl.col("true_dropout_at") < cutoff_end))
        .then(1.0)
        .otherwise((-pl.col("purchase_rate") * horizon_days).exp())
    )
    return (
        customer_persons(con, ground_truth)
        .join(persons, on="person_id", how="inner", maintain_order="left")
        .group_by("customer_id")
        .agg(pl.col("p_no_order").product().alias("oracle_churn"))
    )


def known_rates_scores(
    con: duckdb.DuckDBPyConnection, ground_truth: Path, cutoff: date, horizon_days: int, *, schema: str = "marts"
) -> pl.DataFrame:
    """customer_id, known_rates_churn: P(no order in H | visible history, the person's TRUE rate and dropout
    probability) -- the best any model of the visible data could do even if it knew every latent rate.

    Under the simulator's process a buyer with x > 0 repeat purchases, the last one ``d`` days ago, is
    alive with odds ``(1-p) exp(-rate d) : p``; alive, they order in H days with ``1 - exp(-rate H)``.
    (Seasonality, campaign lift and the bad-experience dropout bump are left out: a ceiling, not a fit.)
    """
    summary = rfm_summary(order_log(con, cutoff, schema=schema), cutoff)
    persons = pl.read_parquet(ground_truth / "persons.parquet", columns=["person_id", "purchase_rate", "dropout_prob"])
    person_of = customer_persons(con, ground_truth).group_by("customer_id").agg(pl.col("person_id").min())
    rate, p = pl.col("purchase_rate"), pl.col("dropout_prob")
    since_last = pl.col("T") - pl.col("recency")
    alive_weight = (1 - p) * (-rate * since_last).exp()
    p_alive = pl.when(pl.col("frequency") == 0).then(1.0).otherwise(alive_weight / (alive_weight + p))
    return (
        summary.join(person_of, on="customer_id", how="inner", maintain_order="left")
        .join(persons, on="person_id", how="inner", maintain_order="left")
        .select("customer_id", (1 - p_alive * (1 - (-rate * horizon_days).exp())).alias("known_rates_churn"))
    )


def revenue_forecast_check(predicted: pl.DataFrame, ground_truth: Path) -> dict[str, float]:
    """Total clv_12m vs the true order value of the 365 days after the history end."""
    truth = pl.read_parquet(ground_truth / "future_orders.parquet", columns=["total_amount"])["total_amount"].sum()
    forecast = float(predicted["clv_12m"].sum())
    return {
        "forecast_12m": forecast,
        "true_12m": float(truth),
        "relative_error": (forecast - float(truth)) / float(truth) if truth else float("nan"),
    }
