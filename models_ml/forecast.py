"""The 12-month revenue forecast (``clv_12m``): BG/NBD x Gamma-Gamma, corrected by what the past year showed.

BG/NBD assumes every purchase carries the same dropout chance. The simulated company (and most
real ones) lose customers faster after bad support experiences, which accumulate with age, so
BG/NBD over-forecasts the next year (+13 % on the medium company; docs/benchmarks.md "## Scores").

The correction is learned on the past only: at the cut-off ``c = as_of - 365`` the same BG/NBD x
Gamma-Gamma is fitted on the orders up to ``c`` and each customer's point-in-time features
(models_ml.features, data up to ``c`` only) are taken; the label is the customer's order value in
``(c, as_of]``. A Poisson HistGradientBoostingRegressor learns that revenue from the features and
the BG/NBD outputs (p_alive, expected purchases and spend, clv_12m), so it learns where BG/NBD is
wrong; at ``as_of`` its prediction is ``clv_12m``. ``p_alive``, ``expected_purchases_*`` and
``expected_spend_per_order`` stay as BG/NBD gives them. A full year both as feature window and as
label window means no seasonal bias.

Why not learn the ratio actual / BG/NBD-expected (Poisson with log(expected) as offset): customers
whom BG/NBD calls dead (expected ~0.001) but who came back give Newton steps of actual / expected;
on the large company the factor reached 1e47 for some of them. Regressing the revenue itself has
no such division. A guard remains: a corrected total outside MAX_TOTAL_SHIFT of the BG/NBD total
means the model extrapolates, and the forecast falls back to BG/NBD.

With less than a year of orders before ``as_of - 365`` there is nothing to learn from: the
forecast falls back to plain BG/NBD x Gamma-Gamma (and says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import duckdb
import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from models_ml.clv import ModelFitError, NumericalError
from models_ml.features import NUMERIC_FEATURES, build_features
from models_ml.value import ValueModels, value_as_of

__all__ = [
    "FORECAST_METHODS",
    "ForecastCorrection",
    "ForecastResult",
    "fit_forecast_correction",
    "forecast_value",
    "revenue_between",
]

FORECAST_METHODS = ("bgnbd", "supervised_correction")
HORIZON_DAYS = 365
#: Customers who had ordered by the training cut-off needed to learn a correction.
MIN_TRAINING_ROWS = 1_000
#: Training customers are a random sample of at most this many (the medium company has 50k at T-365;
#: the nightly scoring pays for the fit).
MAX_TRAINING_ROWS = 50_000
#: The corrected total may differ from the BG/NBD total by at most this share (else: fall back).
MAX_TOTAL_SHIFT = 0.5
_VALUE_COLUMNS = ("p_alive", "expected_purchases_365d", "expected_spend_per_order", "clv_12m")
MODEL_FEATURES: tuple[str, ...] = (*NUMERIC_FEATURES, *_VALUE_COLUMNS)


@dataclass(frozen=True)
class ForecastCorrection:
    model: HistGradientBoostingRegressor
    features: tuple[str, ...]  # MODEL_FEATURES with at least one known value at the training cut-off
    train_cutoff: date
    training_rows: int
    past_expected: float  # BG/NBD x Gamma-Gamma total at train_cutoff over the training customers
    past_actual: float  # their true order value of the following 365 days

    def predict_revenue(self, frame: pl.DataFrame) -> np.ndarray:
        """Expected order value of the next 365 days per row of ``frame`` (features + BG/NBD value columns)."""
        x = frame.select([pl.col(c).cast(pl.Float64) for c in self.features]).to_numpy()
        with threadpool_limits(limits=1, user_api="openmp"):
            return self.model.predict(x)


@dataclass(frozen=True)
class ForecastResult:
    value: pl.DataFrame  # customer_id, p_alive, expected_purchases_90d/365d, expected_spend_per_order, clv_12m
    method: str  # the method used (after any fallback)
    note: str
    bgnbd_total: float  # sum of the plain BG/NBD x Gamma-Gamma clv_12m, for comparison
    correction: ForecastCorrection | None = None
    # The value models fitted at as_of (their purchase_note says when BG/NBD fell back to a limit).
    models: ValueModels | None = None


def revenue_between(con: duckdb.DuckDBPyConnection, start: date, end: date, *, schema: str = "marts") -> pl.DataFrame:
    """customer_id, revenue: order value (any status, as clv_12m counts it) on days in (start, end]."""
    return con.sql(
        f"""
        select customer_id, cast(sum(cast(greatest(coalesce(total_amount, 0), 0) as decimal(38, 6))) as double)
            as revenue
        from {schema}.orders
        where customer_id is not null and order_day > $start and order_day <= $end
        group by customer_id
        """,
        params={"start": start, "end": end},
    ).pl()


def fit_forecast_correction(
    con: duckdb.DuckDBPyConnection, as_of: date, segments: pl.DataFrame | None = None, *, seed: int = 0
) -> ForecastCorrection | str:
    """The correction learned at ``as_of - 365`` with labels to ``as_of``; a reason (str) when it cannot be."""
    cutoff = as_of - timedelta(days=HORIZON_DAYS)
    first = con.execute("select min(order_day) from marts.orders where customer_id is not null").fetchall()[0][0]
    if first is None or first >= cutoff:
        return (
            f"the history starts {first}: a 365-day correction needs orders before {cutoff} (one year before {as_of})"
        )
    try:
        _, past_value = value_as_of(con, cutoff, segments)
    except (ModelFitError, NumericalError) as exc:
        return f"the value models could not be fitted at {cutoff} ({exc})"
    train = (
        build_features(con, cutoff)
        .join(past_value, on="customer_id", how="inner", maintain_order="left")
        .join(revenue_between(con, cutoff, as_of), on="customer_id", how="left", maintain_order="left")
        .with_columns(pl.col("revenue").fill_null(0.0))
    )
    if train.height < MIN_TRAINING_ROWS:
        return f"{train.height} customers had ordered by {cutoff}; the correction needs {MIN_TRAINING_ROWS}"
    if train.height > MAX_TRAINING_ROWS:
        train = train.sample(MAX_TRAINING_ROWS, seed=seed)
    expected = train["clv_12m"].to_numpy()
    actual = train["revenue"].to_numpy()
    # A feature nobody has a value for (no marketing events, no tickets yet) cannot be binned.
    features = tuple(c for c in MODEL_FEATURES if train[c].cast(pl.Float64).fill_nan(None).null_count() < train.height)
    model = HistGradientBoostingRegressor(
        loss="poisson",
        learning_rate=0.1,
        max_iter=150,
        min_samples_leaf=100,
        l2_regularization=1.0,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=10,
        random_state=seed,
    )
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(train.select(features).to_numpy(), actual)
    return ForecastCorrection(model, features, cutoff, train.height, float(expected.sum()), float(actual.sum()))


def forecast_value(
    con: duckdb.DuckDBPyConnection,
    as_of: date,
    method: str,
    *,
    segments: pl.DataFrame | None = None,
    features: pl.DataFrame | None = None,
) -> ForecastResult:
    """Every customer's value as of ``as_of``; ``clv_12m`` by ``method`` (see FORECAST_METHODS).

    ``features`` (build_features at ``as_of``) is reused when the caller has it already.
    """
    if method not in FORECAST_METHODS:
        raise ValueError(f"forecast method {method!r}: expected one of {', '.join(FORECAST_METHODS)}")
    models, value = value_as_of(con, as_of, segments)
    bgnbd_total = float(value["clv_12m"].sum())
    if method == "bgnbd":
        return ForecastResult(value, "bgnbd", "BG/NBD x Gamma-Gamma", bgnbd_total, models=models)
    correction = fit_forecast_correction(con, as_of, segments)
    if isinstance(correction, str):
        return ForecastResult(
            value, "bgnbd", f"fell back to BG/NBD x Gamma-Gamma: {correction}", bgnbd_total, models=models
        )
    features = features if features is not None else build_features(con, as_of)
    frame = value.join(features, on="customer_id", how="left", maintain_order="left")
    corrected = frame.select(value.columns).with_columns(
        clv_12m=pl.Series(np.maximum(correction.predict_revenue(frame), 0.0))
    )
    total = float(corrected["clv_12m"].sum())
    if not np.isfinite(total) or abs(total - bgnbd_total) > MAX_TOTAL_SHIFT * bgnbd_total:
        return ForecastResult(
            value,
            "bgnbd",
            f"fell back to BG/NBD x Gamma-Gamma: the correction learned at "
            f"{correction.train_cutoff} forecasts {total:,.0f} against BG/NBD's {bgnbd_total:,.0f} "
            f"(more than {MAX_TOTAL_SHIFT:.0%} apart: it extrapolates)",
            bgnbd_total,
            models=models,
        )
    past_ratio = correction.past_actual / correction.past_expected if correction.past_expected else float("nan")
    note = (
        f"BG/NBD x Gamma-Gamma corrected by a Poisson booster learned at {correction.train_cutoff} on "
        f"{correction.training_rows:,} customers (their past year: actual / BG/NBD-expected = {past_ratio:.3f})"
    )
    return ForecastResult(corrected, "supervised_correction", note, bgnbd_total, correction, models=models)
