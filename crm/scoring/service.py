"""Training, gating, registering and scoring: the warehouse side of models_ml (no Dagster here either).

The Dagster assets (assets.py), the benchmark and the tests call these functions on a DuckDB
connection. Every write of a step happens in one transaction, so a step that fails leaves the
previous model registry and the previous scores as they were.

Tables (contract with the dashboard): ``ml.model_registry``, ``ml.churn_calibration``,
``ml.churn_drivers`` (training); ``ml.customer_scores``, ``ml.rep_actions`` (which dbt serves as
``marts.customer_scores`` and ``marts.rep_actions`` and joins into customer_360),
``ml.tier_benefits_cost``, ``ml.score_drift`` (scoring).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl

from models_ml.actions import action_reasons, assign_actions, rep_book, usable_rules
from models_ml.churn import (
    ChurnModel,
    ChurnModelParams,
    InsufficientDataError,
    band,
    classification_metrics,
    drift_report,
    explain,
    feature_description,
    load_model,
    train_churn_model,
)
from models_ml.evaluation import Backtest, oracle_scores, run_backtest
from models_ml.features import (
    FEATURE_SOURCES,
    NUMERIC_FEATURES,
    SOURCE_DESCRIPTIONS,
    available_sources,
    build_features,
    last_data_day,
)
from models_ml.forecast import forecast_value
from models_ml.loyalty import (
    assign_tiers,
    benefits_text,
    loyalty_components,
    loyalty_scores,
    points_to_next_tier,
    tier_costs,
    with_benefits,
)
from models_ml.scoring_config import TIERS, ScoringConfig
from models_ml.value import customer_segments, no_order_probability, order_log, rfm_summary

REGISTRY_COLUMNS = """
    model_version varchar, trained_at timestamp, train_cutoff date, horizon_days integer, status varchar,
    metrics_json varchar, card_markdown varchar, backtest_roc_auc double, backtest_brier double"""


class NoPublishedModelError(RuntimeError):
    """Scoring was asked for, but no model has passed the gate yet."""


class NotEnoughHistoryError(ValueError):
    """The history is too short (or too thin) for the backtest: a young company, not a broken run."""


def check_history(con: duckdb.DuckDBPyConnection, as_of: date, horizon_days: int) -> None:
    """The backtest trains at as_of - 2H on customers who bought before it: orders must start earlier."""
    first = con.execute("select min(order_day) from marts.orders where customer_id is not null").fetchall()[0][0]
    train_cutoff = as_of - timedelta(days=2 * horizon_days)
    if first is None or first >= train_cutoff:
        raise NotEnoughHistoryError(
            f"the churn backtest trains at {train_cutoff} (2 x {horizon_days} days before the last order day "
            f"{as_of}) and needs orders before it; the order history starts {first}"
        )


# The score tables as dbt's marts read them (source `ml`); created empty before the first scoring
# run so that customer_360 always builds, with null scores until a model is published.
SCORE_TABLES = {
    "ml.customer_scores": """
        customer_id varchar, scored_as_of date, churn_probability double, churn_band varchar,
        churn_reasons varchar, p_alive double, expected_purchases_90d double, expected_purchases_365d double,
        expected_spend_per_order double, clv_12m double, loyalty_score double, loyalty_tier varchar,
        benefits varchar, benefits_yearly_cost double, next_action varchar, action_priority integer,
        action_reason varchar, value_at_stake double, model_version varchar""",
    "ml.rep_actions": """
        rep_id varchar, rep_name varchar, rank_in_book bigint, customer_id varchar, customer_name varchar,
        next_action varchar, action_priority integer, value_at_stake double, reason varchar,
        churn_probability double, clv_12m double, loyalty_tier varchar""",
}


def ensure_ml_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute("create schema if not exists ml")
    for table, columns in SCORE_TABLES.items():
        con.execute(f"create table if not exists {table} ({columns})")
    con.execute(f"create table if not exists ml.model_registry ({REGISTRY_COLUMNS})")
    con.execute(
        "create table if not exists ml.churn_calibration (model_version varchar, decile integer, customers integer, "
        "mean_predicted double, observed_rate double)"
    )
    con.execute(
        "create table if not exists ml.churn_drivers (model_version varchar, feature varchar, description varchar, "
        "importance double)"
    )


def without_absent_sources(
    params: ChurnModelParams, sources: dict[str, bool]
) -> tuple[ChurnModelParams, dict[str, str]]:
    """The model's features minus those computed from data the warehouse has none of, and why."""
    absent = {
        name: f"no {SOURCE_DESCRIPTIONS[FEATURE_SOURCES[name]]} in the warehouse"
        for name in params.features
        if not sources.get(FEATURE_SOURCES.get(name, "orders"), True)
    }
    return dataclasses.replace(params, features=tuple(f for f in params.features if f not in absent)), absent


def model_params(config: ScoringConfig) -> ChurnModelParams:
    m = config.churn.model
    unknown = sorted(set(m.features or ()) - set(NUMERIC_FEATURES))
    if unknown:
        raise ValueError(f"churn.model.features: unknown feature(s) {unknown}; known: {', '.join(NUMERIC_FEATURES)}")
    return ChurnModelParams(
        max_iter=m.max_iter,
        learning_rate=m.learning_rate,
        max_leaf_nodes=m.max_leaf_nodes,
        min_samples_leaf=m.min_samples_leaf,
        l2_regularization=m.l2_regularization,
        max_training_rows=m.max_training_rows,
        features=tuple(m.features) if m.features else NUMERIC_FEATURES,
    )


@dataclass(frozen=True)
class RegisteredModel:
    model_version: str
    trained_at: datetime
    train_cutoff: date
    horizon_days: int
    backtest_roc_auc: float
    backtest_brier: float


def current_model(con: duckdb.DuckDBPyConnection) -> RegisteredModel | None:
    ensure_ml_schema(con)
    rows = con.execute(
        "select model_version, trained_at, train_cutoff, horizon_days, backtest_roc_auc, backtest_brier "
        "from ml.model_registry where status = 'current' order by trained_at desc limit 1"
    ).fetchall()
    return RegisteredModel(*rows[0]) if rows else None


def training_due(current: RegisteredModel | None, as_of: date, config: ScoringConfig) -> str | None:
    """Why a new model should be trained tonight, or None to reuse the current one."""
    horizon = config.churn.horizon_days
    if current is None:
        return "no published model yet"
    if current.horizon_days != horizon:
        return f"horizon changed from {current.horizon_days} to {horizon} days"
    age = (as_of - timedelta(days=horizon)) - current.train_cutoff
    if age.days >= config.retrain.cadence_days:
        return f"the current model's training cut-off is {age.days} days old (cadence {config.retrain.cadence_days})"
    return None


@dataclass(frozen=True)
class GateResult:
    passed: bool
    message: str


def quality_gate(candidate: dict[str, Any], current: RegisteredModel | None, config: ScoringConfig) -> GateResult:
    """A candidate may not be worse than the published model on the backtest (ROC-AUC and Brier)."""
    if current is None:
        return GateResult(True, "first model: nothing to compare with")
    if current.horizon_days != config.churn.horizon_days:
        return GateResult(
            True,
            f"horizon changed ({current.horizon_days} -> {config.churn.horizon_days} days): "
            f"{current.model_version} answers another question",
        )
    auc, brier = candidate["roc_auc"], candidate["brier"]
    problems = []
    if auc < current.backtest_roc_auc - config.gate.max_roc_auc_drop:
        problems.append(f"ROC-AUC {auc:.4f} < current {current.backtest_roc_auc:.4f} - {config.gate.max_roc_auc_drop}")
    if brier > current.backtest_brier + config.gate.max_brier_rise:
        problems.append(f"Brier {brier:.4f} > current {current.backtest_brier:.4f} + {config.gate.max_brier_rise}")
    if problems:
        return GateResult(False, f"rejected against {current.model_version}: " + "; ".join(problems))
    return GateResult(
        True,
        f"ROC-AUC {auc:.4f} vs current {current.backtest_roc_auc:.4f}; "
        f"Brier {brier:.4f} vs {current.backtest_brier:.4f}",
    )


@dataclass
class TrainingOutcome:
    model_version: str
    status: str  # current | rejected | reused
    reason: str
    gate: GateResult
    metrics: dict[str, Any] = field(default_factory=dict)


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def model_card(
    version: str,
    bt: Backtest,
    model: ChurnModel,
    train_cutoff: date,
    as_of: date,
    gate: GateResult,
    oracle: dict[str, Any] | None,
) -> str:
    h = bt.horizon_days
    lines = [
        f"# Churn model {version}",
        "",
        "## Intended use",
        (
            f"Rank customers by the probability of placing no order in the next {h} days, to decide whom a rep "
            "calls or which offer to send. Probabilities are calibrated on held-out customers. Not for decisions "
            "about individuals without a human in the loop; not for other horizons or other companies."
        ),
        "",
        "## Training",
        (
            f"- Features as of {train_cutoff} (data on or before that day only), label: no order in "
            f"{train_cutoff + timedelta(days=1)} .. {as_of}."
        ),
        (
            f"- {model.training_rows:,} customers, churn rate {model.training_churn_rate:.3f}; "
            f"HistGradientBoostingClassifier + {model.calibration_method} calibration on a 25 % hold-out."
        ),
        f"- Features: {', '.join(model.features)}.",
        *(
            [
                "- Left out (the company's data cannot inform them): "
                + "; ".join(f"{name} ({why})" for name, why in model.left_out.items())
                + "."
            ]
            if model.left_out
            else []
        ),
        *[f"- {note}." for note in bt.notes],
        "",
        "## Backtest",
        f"Trained at {bt.train_cutoff} (labels to {bt.eval_cutoff}), "
        f"evaluated at {bt.eval_cutoff} (labels to {bt.as_of}).",
        "",
        "| scorer | ROC-AUC | PR-AUC | Brier | top-decile lift |",
        "| --- | --- | --- | --- | --- |",
    ]
    rows = dict(bt.metrics)
    if oracle:
        rows["oracle (true latent state)"] = oracle
    for name, m in rows.items():
        lines.append(
            f"| {name} | {_fmt(m['roc_auc'])} | {_fmt(m['pr_auc'])} | {_fmt(m.get('brier', '-'))} | "
            f"{_fmt(m['top_decile_lift'])} |"
        )
    lines += [
        "",
        "Calibration by decile (backtest):",
        "",
        "| decile | customers | mean predicted | observed |",
        "| --- | --- | --- | --- |",
    ]
    for r in bt.calibration.iter_rows(named=True):
        lines.append(f"| {r['decile']} | {r['customers']} | {r['mean_predicted']:.3f} | {r['observed_rate']:.3f} |")
    lines += [
        "",
        "## Gate",
        gate.message,
        "",
        "## Limits",
        (
            "- Learns from one company's history; a change in how orders are recorded shifts the features "
            "(the drift check warns)."
        ),
        ("- Reasons are the model's sensitivity to each group of features (set to a typical value), not causes."),
        "- The oracle row (when shown) uses the simulator's hidden truth; no model can beat it.",
    ]
    return "\n".join(lines) + "\n"


def train_and_register(
    con: duckdb.DuckDBPyConnection,
    config: ScoringConfig,
    models_dir: Path,
    *,
    as_of: date | None = None,
    now: datetime | None = None,
    force: bool = False,
    ground_truth: Path | None = None,
    params: ChurnModelParams | None = None,
) -> TrainingOutcome:
    """Retrain when due (or ``force``): backtest, gate against the current model, save and register."""
    ensure_ml_schema(con)
    as_of = as_of or last_data_day(con)
    if as_of is None:
        raise NotEnoughHistoryError("no orders in marts.orders: nothing to train on")
    current = current_model(con)
    reason = "forced" if force else training_due(current, as_of, config)
    if reason is None:
        return TrainingOutcome(
            current.model_version,
            "reused",
            "current model is younger than the cadence",
            GateResult(True, "no new model"),
        )
    h = config.churn.horizon_days
    params, absent = without_absent_sources(params or model_params(config), available_sources(con))
    check_history(con, as_of, h)
    try:
        bt = run_backtest(con, as_of, h, params)
    except InsufficientDataError as exc:
        raise NotEnoughHistoryError(f"backtest at {as_of}: {exc}") from exc
    gate = quality_gate(bt.metrics["model"], current, config)
    oracle = None
    if ground_truth is not None and (ground_truth / "persons.parquet").exists():
        o = bt.evaluation.join(
            oracle_scores(con, ground_truth, bt.eval_cutoff, h), on="customer_id", how="inner", maintain_order="left"
        )
        oracle = classification_metrics(o["churned"].to_numpy(), o["oracle_churn"].to_numpy())
    train_cutoff = as_of - timedelta(days=h)
    labelled = bt.labelled_eval_features  # features at as_of - H with labels to as_of
    model = train_churn_model(labelled.drop("churned"), labelled.select("customer_id", "churned"), params)
    model.left_out = {**absent, **model.left_out}
    now = now or datetime.now().replace(microsecond=0)
    version = f"churn-h{h}-{train_cutoff:%Y%m%d}-{now:%Y%m%dT%H%M%S}"
    folder = models_dir / version
    model.save(folder)
    card = model_card(version, bt, model, train_cutoff, as_of, gate, oracle)
    (folder / "model_card.md").write_text(card, encoding="utf-8")
    metrics = {
        **bt.metrics,
        **({"oracle": oracle} if oracle else {}),
        "backtest": {"train_cutoff": str(bt.train_cutoff), "eval_cutoff": str(bt.eval_cutoff)},
        "calibration_method": model.calibration_method,
        "training_rows": model.training_rows,
    }
    status = "current" if gate.passed else "rejected"
    calibration = bt.calibration.with_columns(pl.lit(version).alias("model_version")).select(
        "model_version", "decile", "customers", "mean_predicted", "observed_rate"
    )
    drivers = pl.DataFrame(
        {
            "model_version": [version] * len(model.importance),
            "feature": list(model.importance),
            "description": [feature_description(f) for f in model.importance],
            "importance": list(model.importance.values()),
        }
    ).sort("importance", descending=True)
    con.execute("begin")
    try:
        if gate.passed:
            con.execute("update ml.model_registry set status = 'retired' where status = 'current'")
        con.execute(
            "insert into ml.model_registry values (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                version,
                now,
                train_cutoff,
                h,
                status,
                json.dumps(metrics, default=str),
                card,
                bt.metrics["model"]["roc_auc"],
                bt.metrics["model"]["brier"],
            ],
        )
        con.register("_calibration", calibration.to_arrow())
        con.execute("insert into ml.churn_calibration select * from _calibration")
        con.register("_drivers", drivers.to_arrow())
        con.execute("insert into ml.churn_drivers select * from _drivers")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    finally:
        for name in ("_calibration", "_drivers"):
            with contextlib.suppress(duckdb.Error):  # not registered when the failure came first
                con.unregister(name)
    return TrainingOutcome(version, status, reason, gate, metrics)


# ----------------------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------------------


@dataclass
class ScoringOutcome:
    model_version: str
    scored_as_of: date
    customers: int
    rep_actions: int
    drift: dict[str, float]
    bands: dict[str, int]
    tiers: dict[str, int]
    notes: list[tuple[str, str]] = field(default_factory=list)


def _previous_scores(con: duckdb.DuckDBPyConnection, as_of: date) -> pl.DataFrame | None:
    """The scores of the last *earlier* day: tier hysteresis and "risk rising" compare with them.

    A re-run for the same day compares with the same earlier scores, never with its own first run,
    so the same inputs give the same outputs (``ml.customer_scores_previous`` keeps them).
    """
    tables = {
        r[0]
        for r in con.execute("select table_name from information_schema.tables where table_schema = 'ml'").fetchall()
    }
    columns = "customer_id, loyalty_tier as previous_tier, churn_probability as previous_churn_probability"
    if "customer_scores" in tables:
        earlier = con.execute(
            "select count(*) > 0 from ml.customer_scores where scored_as_of < $d", {"d": as_of}
        ).fetchall()[0][0]
        if earlier:
            return con.sql(
                f"select {columns} from ml.customer_scores where scored_as_of < $d", params={"d": as_of}
            ).pl()
    if "customer_scores_previous" in tables:
        return con.sql(
            f"select {columns} from ml.customer_scores_previous where scored_as_of < $d", params={"d": as_of}
        ).pl()
    return None


@dataclass
class ScoringNotes:
    """What the scores left out or fell back on, and why (ml.scoring_notes; model card; Data health)."""

    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, component: str, note: str) -> None:
        self.rows.append((component, note))


def _churn(
    con, config: ScoringConfig, model: ChurnModel | None, features: pl.DataFrame, forecast, as_of: date, notes
) -> tuple[np.ndarray, list[str]]:
    """Churn probability and reasons: from the model, or (no model yet) the purchase model's estimate."""
    h = config.churn.horizon_days
    if model is not None:
        for name, why in model.left_out.items():
            notes.add("churn features", f"{name} left out: {why}")
        return explain(model, features)
    summary = rfm_summary(order_log(con, as_of), as_of)
    estimate = no_order_probability(forecast.models, summary, h)
    probability = (
        features.select("customer_id")
        .join(estimate, on="customer_id", how="left", maintain_order="left")["churn_probability"]
        .fill_null(0.5)
        .to_numpy()
    )
    notes.add(
        "churn",
        f"no churn model yet (the history or the customers are too few for the backtest): churn probability is "
        f"{forecast.models.purchase_model_name}'s P(no order in the next {h} days), uncalibrated; no reasons given",
    )
    return probability, [""] * len(probability)


def compute_scores(
    con: duckdb.DuckDBPyConnection,
    config: ScoringConfig,
    model: ChurnModel | None,
    model_version: str,
    as_of: date,
    notes: ScoringNotes | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, float]]:
    """customer_scores frame, rep_actions frame and drift (PSI per checked feature) as of ``as_of``.

    ``model`` None: no churn model could be trained yet; churn comes from the purchase model. What
    the company's sources cannot inform is left out (``notes`` says what and why).
    """
    notes = notes if notes is not None else ScoringNotes()
    sources = available_sources(con)
    features = build_features(con, as_of)
    forecast = forecast_value(
        con, as_of, config.value.forecast_method, segments=customer_segments(con), features=features
    )
    if forecast.models is not None:
        for note in (forecast.models.purchase_note, forecast.models.spend_note):
            if note:
                notes.add("value", note)
    notes.add("value", f"12-month value: {forecast.note}")
    probability, reasons = _churn(con, config, model, features, forecast, as_of, notes)
    bands = config.churn.bands
    frame = features.with_columns(
        churn_probability=pl.Series(probability),
        churn_band=pl.Series(band(probability, bands.medium_from, bands.high_from)),
        churn_reasons=pl.Series(reasons, dtype=pl.String),
    ).join(forecast.value, on="customer_id", how="left", maintain_order="left")
    previous = _previous_scores(con, as_of)
    if previous is not None:
        frame = frame.join(previous, on="customer_id", how="left", maintain_order="left")
    else:
        frame = frame.with_columns(
            previous_tier=pl.lit(None, pl.String), previous_churn_probability=pl.lit(None, pl.Float64)
        )
    loyalty = config.loyalty
    weights = loyalty_components(loyalty, sources)
    notes.add(
        "loyalty",
        "components: "
        + ", ".join(f"{k} {v:.0%}" for k, v in weights.items())
        + ("" if sources.get("marketing") else "; engagement is recency only (no marketing events)")
        + ("" if sources.get("support") else "; satisfaction dropped (no support tickets), weights re-normalised"),
    )
    score = loyalty_scores(frame, loyalty, sources)
    tiers = assign_tiers(score.to_numpy(), frame["previous_tier"].to_list(), loyalty)
    next_tier = [TIERS[TIERS.index(t) + 1] if t != TIERS[-1] else None for t in tiers]
    next_benefits = {tier: benefits_text(config.benefits.tiers[tier]) for tier in TIERS}
    frame = frame.with_columns(
        loyalty_score=score,
        loyalty_tier=pl.Series(tiers),
        next_tier=pl.Series(next_tier, dtype=pl.String),
        points_to_next_tier=pl.Series(points_to_next_tier(score.to_numpy(), tiers, loyalty)).fill_nan(None),
    ).with_columns(
        next_tier_benefits=pl.col("next_tier").replace_strict(next_benefits, default=None, return_dtype=pl.String),
        value_percentile=(pl.col("clv_12m").rank("average") / pl.len()),
        risk_rising=pl.when(pl.col("previous_churn_probability").is_not_null())
        .then(pl.col("churn_probability") - pl.col("previous_churn_probability") >= 0.05)
        .otherwise(pl.col("order_trend_90d") < 0),
        last_rating_bad=pl.col("bad_ratings_90d") > 0,
    )
    frame = with_benefits(frame, config.benefits)
    for rule, why in usable_rules(config.actions, sources)[1].items():
        notes.add("actions", f"rule '{rule}' skipped: {why}")
    frame = assign_actions(frame, config.actions, sources)
    frame = frame.with_columns(action_reason=action_reasons(frame, config.actions))
    frame = frame.with_columns(
        next_action=pl.when(pl.col("next_action").str.starts_with("tier upgrade") & pl.col("next_tier").is_not_null())
        .then(pl.format("{}: {} ({})", pl.col("next_action"), pl.col("next_tier"), pl.col("next_tier_benefits")))
        .otherwise(pl.col("next_action"))
    )
    scores = frame.select(
        "customer_id",
        pl.lit(as_of).alias("scored_as_of"),
        "churn_probability",
        "churn_band",
        "churn_reasons",
        "p_alive",
        "expected_purchases_90d",
        "expected_purchases_365d",
        "expected_spend_per_order",
        "clv_12m",
        "loyalty_score",
        "loyalty_tier",
        "benefits",
        "benefits_yearly_cost",
        "next_action",
        "action_priority",
        "action_reason",
        "value_at_stake",
        pl.lit(model_version).alias("model_version"),
    ).sort("customer_id")
    people = con.sql(
        "select customer_id, full_name as customer_name, cast(owner_rep_id as varchar) as rep_id, "
        "owner_rep_name as rep_name from marts.customers order by customer_id"
    ).pl()
    drift = {}
    if model is not None:
        drift_all = drift_report(model, features, probability)
        drift = {k: v for k, v in drift_all.items() if k in set(config.drift.features)}
    return scores, rep_book(scores, people), drift


def _replace_table(con: duckdb.DuckDBPyConnection, name: str, frame: pl.DataFrame) -> None:
    con.register("_frame", frame.to_arrow())
    try:
        con.execute(f"create or replace table {name} as select * from _frame")
    finally:
        con.unregister("_frame")


# Scores computed without a churn model (too short a history for the backtest) carry this version.
NO_MODEL_VERSION = "no-churn-model"


def score_and_publish(
    con: duckdb.DuckDBPyConnection, config: ScoringConfig, models_dir: Path, *, as_of: date | None = None
) -> ScoringOutcome:
    """Score every customer who has ordered and replace the score tables.

    With the current churn model when one is published; before that (a young or small company) with
    the purchase model's estimate of churn, flagged in ``ml.scoring_notes``. Raises
    NoPublishedModelError only when there is nothing to score (no orders).
    """
    as_of = as_of or last_data_day(con)
    if as_of is None:
        raise NoPublishedModelError("no orders in marts.orders: nobody to score")
    current = current_model(con)
    model = load_model(models_dir / current.model_version) if current else None
    version = current.model_version if current else NO_MODEL_VERSION
    notes = ScoringNotes()
    scores, book, drift = compute_scores(con, config, model, version, as_of, notes)
    drift_frame = pl.DataFrame(
        {
            "model_version": [version] * len(drift),
            "scored_as_of": [as_of] * len(drift),
            "feature": list(drift),
            "psi": list(drift.values()),
        },
        schema={"model_version": pl.String, "scored_as_of": pl.Date, "feature": pl.String, "psi": pl.Float64},
    )
    notes_frame = pl.DataFrame(
        {
            "scored_as_of": [as_of] * len(notes.rows),
            "component": [c for c, _ in notes.rows],
            "note": [n for _, n in notes.rows],
        },
        schema={"scored_as_of": pl.Date, "component": pl.String, "note": pl.String},
    )
    con.execute("begin")
    try:
        ensure_ml_schema(con)
        # Yesterday's scores are kept for tomorrow's comparison; a same-day re-run keeps the same ones.
        earlier = con.execute(
            "select count(*) > 0 from ml.customer_scores where scored_as_of < $d", {"d": as_of}
        ).fetchall()[0][0]
        if earlier:
            con.execute("create or replace table ml.customer_scores_previous as select * from ml.customer_scores")
        _replace_table(con, "ml.customer_scores", scores.with_columns(pl.col("action_priority").cast(pl.Int32)))
        _replace_table(con, "ml.rep_actions", book)
        _replace_table(con, "ml.tier_benefits_cost", tier_costs(scores))
        _replace_table(con, "ml.score_drift", drift_frame)
        _replace_table(con, "ml.scoring_notes", notes_frame)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    return ScoringOutcome(
        model_version=version,
        scored_as_of=as_of,
        customers=scores.height,
        rep_actions=book.height,
        drift=drift,
        bands=dict(scores.group_by("churn_band").len().iter_rows()),
        tiers=dict(scores.group_by("loyalty_tier").len().iter_rows()),
        notes=notes.rows,
    )


def worst_drift(drift: dict[str, float]) -> tuple[str, float]:
    if not drift:
        return "", 0.0
    name = max(drift, key=lambda k: drift[k] if not math.isnan(drift[k]) else -1)
    return name, drift[name]
