"""Churn risk: gradient boosting on point-in-time features, probability-calibrated, with reasons.

* Label (see :func:`models_ml.features.churn_labels`): no order in the H days after the cut-off.
* Model: :class:`~sklearn.ensemble.HistGradientBoostingClassifier` (handles missing values such as
  "no ticket yet" natively) fitted on 75 % of the training rows, then calibrated on the other 25 %
  with :class:`~sklearn.calibration.CalibratedClassifierCV` around the frozen booster.
  *Isotonic* calibration when the calibration set has at least ``ISOTONIC_MIN_ROWS`` rows: it fixes
  any monotone distortion of the booster's scores and there is data enough for its steps; below that
  *sigmoid* (two parameters) so a few hundred rows cannot overfit the curve. One booster + one
  calibrator (not a 3-fold ensemble) keeps prediction, and the per-customer reasons that call it a
  dozen times, cheap at a million customers.
* Reasons: for each customer and each *reason group* (features that belong to one plain-words
  statement) the change in the calibrated probability when the group's features are replaced by the
  population reference (training medians). The three largest increases become the reasons, worded
  with the customer's own values (:func:`explain`); reasons are joined by '; ', so none holds one.
  Nothing is invented: a group that lowers the risk is never given as a reason, nor one whose
  statement the customer's own values do not bear out (no "0 bad ratings", see :class:`ReasonGroup`);
  counts agree with their nouns ("1 ticket", "3 tickets").

No Dagster imports; the scoring service (``crm/scoring``) calls these functions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.frozen import FrozenEstimator
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from models_ml.features import FEATURES, NUMERIC_FEATURES

__all__ = [
    "BAND_ORDER",
    "REASON_GROUPS",
    "ChurnModel",
    "ChurnModelParams",
    "InsufficientDataError",
    "band",
    "calibration_by_decile",
    "classification_metrics",
    "drift_report",
    "explain",
    "feature_description",
    "learnable_features",
    "load_model",
    "psi",
    "train_churn_model",
]


class InsufficientDataError(ValueError):
    """Too few labelled customers, or only one class, to train a churn model."""


ISOTONIC_MIN_ROWS = 1_000
#: Below this many rows the booster runs on one thread: OpenMP's start-up and spin-waiting cost more
#: than they save on small arrays (and on a busy machine ten times more).
PARALLEL_MIN_ROWS = 100_000


def _threads(n_rows: int) -> threadpool_limits:
    return threadpool_limits(limits=1 if n_rows < PARALLEL_MIN_ROWS else None, user_api="openmp")


MIN_TRAINING_ROWS = 200
BAND_ORDER = ("low", "medium", "high")
_FEATURE_DESCRIPTIONS = {f.name: f.description for f in FEATURES}


@dataclass(frozen=True)
class ChurnModelParams:
    max_iter: int = 150
    learning_rate: float = 0.1
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 40
    l2_regularization: float = 1.0
    # A million customers train as well on a stratified sample; the cap keeps training time flat.
    max_training_rows: int = 150_000
    features: tuple[str, ...] = NUMERIC_FEATURES
    seed: int = 7


# ----------------------------------------------------------------------------------------------
# reasons: groups of features that make one plain-words statement
# ----------------------------------------------------------------------------------------------


def _n(name: str, scale: float = 1.0) -> pl.Expr:
    """A feature as a whole number in words: "unknown" when missing."""
    value = pl.col(name).cast(pl.Float64) * scale
    return (
        pl.when(value.is_null() | value.is_nan())
        .then(pl.lit("unknown"))
        .otherwise(value.round(0).cast(pl.Int64, strict=False).cast(pl.String))
    )


def _v(name: str) -> pl.Expr:
    """A feature as a float with missing (null or NaN) as null, so comparisons on it are simply false."""
    value = pl.col(name).cast(pl.Float64)
    return pl.when(value.is_nan()).then(None).otherwise(value)


def _count(name: str, noun: str, plural: str | None = None) -> pl.Expr:
    """ "1 order", "3 orders": a count with its noun in the right number."""
    one = _v(name).round(0) == 1
    return pl.format("{} {}", _n(name), pl.when(one).then(pl.lit(noun)).otherwise(pl.lit(plural or noun + "s")))


def _below(name: str, reference: dict[str, float]) -> pl.Expr:
    """The customer's value is below the typical customer's (false when either is unknown)."""
    typical = reference.get(name, float("nan"))
    if typical is None or math.isnan(typical):
        return pl.lit(False)
    return _v(name) < typical


def _above(name: str, reference: dict[str, float]) -> pl.Expr:
    typical = reference.get(name, float("nan"))
    if typical is None or math.isnan(typical):
        return pl.lit(False)
    return _v(name) > typical


def _always(_reference: dict[str, float]) -> pl.Expr:
    return pl.lit(True)


_RECENCY = (
    pl.when(_v("usual_gap_days").is_null())
    .then(pl.format("only one order day so far, {} ago", _count("recency_days", "day")))
    .otherwise(
        pl.format(
            "no order for {}, against a usual gap of {}", _count("recency_days", "day"), _count("usual_gap_days", "day")
        )
    )
)
_FREQUENCY = (
    pl.when(_v("orders_365d") == 0)
    .then(pl.format("no order in the last 365 days ({} in all)", _count("orders_lifetime", "order")))
    .otherwise(
        pl.format("only {} in the last 365 days ({} in all)", _count("orders_365d", "order"), _n("orders_lifetime"))
    )
)
_TREND = (
    pl.when(_v("orders_90d") == 0)
    .then(pl.format("{} in the 90 days before the last 90, none since", _count("orders_prev_90d", "order")))
    .otherwise(
        pl.format(
            "{} in the 90 days before the last 90, only {} since", _count("orders_prev_90d", "order"), _n("orders_90d")
        )
    )
)
_VALUE = (
    pl.when(_v("revenue_365d").fill_null(0) < 0.5)
    .then(pl.format("nothing spent in the last 365 days (average order {})", _n("average_order_value")))
    .otherwise(
        pl.format(
            "spent {} in the last 365 days, {} an order on average", _n("revenue_365d"), _n("average_order_value")
        )
    )
)
_RETURNS = (
    pl.when((_v("returns_365d") >= 1) & (_v("cancellations_365d") >= 1))
    .then(
        pl.format(
            "{} returned and {} cancelled in the last 365 days",
            _count("returns_365d", "order"),
            _n("cancellations_365d"),
        )
    )
    .when(_v("returns_365d") >= 1)
    .then(pl.format("{} returned in the last 365 days", _count("returns_365d", "order")))
    .otherwise(pl.format("{} cancelled in the last 365 days", _count("cancellations_365d", "order")))
)
_DISCOUNTS = pl.format(
    "{}% of orders placed with a discount (on average {}% off an order)",
    _n("discount_order_share", 100),
    _n("average_discount_pct"),
)
_ENGAGEMENT = (
    pl.when(_v("days_since_engagement").is_null())
    .then(pl.lit("has never opened or clicked a marketing email"))
    .otherwise(pl.format("has not opened or clicked a marketing email for {}", _count("days_since_engagement", "day")))
)
_RATINGS = (
    pl.when(_v("bad_ratings_90d") >= 1)
    .then(pl.format("gave {} in the last 90 days", _count("bad_ratings_90d", "bad support rating")))
    .otherwise(pl.format("gave {}, none in the last 90 days", _count("bad_ratings_lifetime", "bad support rating")))
)
_SUPPORT_LOAD = (
    pl.when((_v("tickets_90d") >= 1) & (_v("open_tickets") >= 1))
    .then(
        pl.format(
            "raised {} in the last 90 days, {} still open", _count("tickets_90d", "support ticket"), _n("open_tickets")
        )
    )
    .when(_v("tickets_90d") >= 1)
    .then(pl.format("raised {} in the last 90 days", _count("tickets_90d", "support ticket")))
    .otherwise(pl.format("{} still open", _count("open_tickets", "support ticket")))
)
_RESOLUTION = (
    pl.when(_v("median_resolution_hours") >= 1)
    .then(
        pl.format(
            "{} took over 5 days to resolve (median {})",
            _count("slow_tickets_lifetime", "support ticket"),
            _count("median_resolution_hours", "hour"),
        )
    )
    .otherwise(pl.format("{} took over 5 days to resolve", _count("slow_tickets_lifetime", "support ticket")))
)
_ACCOUNT = (
    pl.when((_v("is_b2b") > 0) & (_v("payment_terms_days") >= 1))
    .then(pl.format("a business account on {}-day payment terms", _n("payment_terms_days")))
    .when(_v("is_b2b") > 0)
    .then(pl.lit("a business account"))
    .otherwise(pl.lit("a consumer (B2C) customer"))
)


@dataclass(frozen=True)
class ReasonGroup:
    """Features that make one plain-words statement, the statement as a polars expression, and when it
    may be said at all.

    ``applies(reference)`` is true for the customers whose own values make the statement a reason
    (an event that happened, a value on the risky side of the typical customer's): a group can raise
    the model's probability for a customer through a value the statement cannot honestly name
    ("0 bad ratings" when the push comes from having no good rating), and then it is not given.
    """

    name: str
    features: tuple[str, ...]
    text: pl.Expr
    applies: Callable[[dict[str, float]], pl.Expr] = _always

    def render(self, values: dict[str, float | None]) -> str:
        """The statement for one customer's values (what :func:`explain` writes for that row)."""
        row = pl.DataFrame({f: [values.get(f)] for f in self.features}, schema={f: pl.Float64 for f in self.features})
        return row.select(self.text).item()


REASON_GROUPS: tuple[ReasonGroup, ...] = (
    ReasonGroup(
        "recency",
        ("recency_days", "usual_gap_days", "recency_vs_usual_gap"),
        _RECENCY,
        lambda r: (
            (_v("recency_days") >= 1) & (_v("usual_gap_days").is_null() | (_v("recency_days") > _v("usual_gap_days")))
        ),
    ),
    ReasonGroup(
        "frequency",
        ("orders_lifetime", "orders_365d"),
        _FREQUENCY,
        lambda r: _below("orders_365d", r) & (_v("orders_lifetime") >= 1),
    ),
    ReasonGroup(
        "trend",
        ("orders_90d", "orders_prev_90d", "order_trend_90d"),
        _TREND,
        lambda r: _v("orders_90d") < _v("orders_prev_90d"),
    ),
    ReasonGroup(
        "value",
        ("average_order_value", "revenue_365d"),
        _VALUE,
        lambda r: (_below("revenue_365d", r) | _below("average_order_value", r)) & (_v("average_order_value") >= 0.5),
    ),
    ReasonGroup(
        "returns",
        ("returns_365d", "cancellations_365d"),
        _RETURNS,
        lambda r: (_v("returns_365d") >= 1) | (_v("cancellations_365d") >= 1),
    ),
    ReasonGroup(
        "discounts",
        ("discount_order_share", "average_discount_pct"),
        _DISCOUNTS,
        # More of their orders discounted than the typical customer's (any discount when typical is none).
        lambda r: (
            (_v("discount_order_share") >= 0.005)
            & (_v("average_discount_pct") >= 0.5)
            & (_above("discount_order_share", r) | pl.lit(not r.get("discount_order_share")))
        ),
    ),
    ReasonGroup(
        "engagement",
        ("opens_90d", "clicks_90d", "engagement_decayed", "days_since_engagement"),
        _ENGAGEMENT,
        # No open or click in 90 days, and the last one (if any) really is that old.
        lambda r: (
            ((_v("opens_90d").fill_null(0) + _v("clicks_90d").fill_null(0)) == 0)
            & (_v("days_since_engagement").is_null() | (_v("days_since_engagement") >= 90))
        ),
    ),
    ReasonGroup(
        "unsubscribed", ("is_unsubscribed",), pl.lit("unsubscribed from marketing"), lambda r: _v("is_unsubscribed") > 0
    ),
    ReasonGroup(
        "support_ratings",
        ("bad_ratings_90d", "bad_ratings_lifetime", "good_ratings_lifetime"),
        _RATINGS,
        lambda r: (_v("bad_ratings_90d") >= 1) | (_v("bad_ratings_lifetime") >= 1),
    ),
    ReasonGroup(
        "support_load",
        ("tickets_90d", "tickets_lifetime", "open_tickets"),
        _SUPPORT_LOAD,
        lambda r: (_v("tickets_90d") >= 1) | (_v("open_tickets") >= 1),
    ),
    ReasonGroup(
        "resolution",
        ("median_resolution_hours", "slow_tickets_lifetime"),
        _RESOLUTION,
        lambda r: _v("slow_tickets_lifetime") >= 1,
    ),
    ReasonGroup(
        "tenure",
        ("tenure_days",),
        pl.format("a customer for only {}", _count("tenure_days", "day")),
        lambda r: _below("tenure_days", r) & (_v("tenure_days") >= 1),
    ),
    ReasonGroup("account", ("is_b2b", "payment_terms_days"), _ACCOUNT, lambda r: _v("is_b2b").is_not_null()),
)
#: Below this increase of the churn probability a group is not worth naming as a reason.
MIN_REASON_CONTRIBUTION = 0.01


# ----------------------------------------------------------------------------------------------
# the model
# ----------------------------------------------------------------------------------------------


@dataclass
class ChurnModel:
    """A calibrated churn classifier plus what scoring, reasons and drift checks need."""

    estimator: CalibratedClassifierCV
    features: tuple[str, ...]
    calibration_method: str
    reference: dict[str, float]  # training medians: the "typical customer" for reasons
    drift_bins: dict[str, list[float]]  # training quantile edges per feature and for the score
    drift_reference: dict[str, list[float]]  # training share per bin
    training_rows: int
    training_churn_rate: float
    importance: dict[str, float] = field(default_factory=dict)
    # Features asked for but not used, with why (no values in the training data, a source absent).
    left_out: dict[str, str] = field(default_factory=dict)

    def matrix(self, frame: pl.DataFrame) -> np.ndarray:
        missing = [f for f in self.features if f not in frame.columns]
        if missing:
            raise ValueError(f"feature frame lacks column(s) {missing}")
        return frame.select([pl.col(f).cast(pl.Float64) for f in self.features]).to_numpy()

    def predict(self, frame: pl.DataFrame | np.ndarray) -> np.ndarray:
        X = frame if isinstance(frame, np.ndarray) else self.matrix(frame)
        if X.shape[0] == 0:
            return np.zeros(0)
        with _threads(X.shape[0]):
            return self.estimator.predict_proba(X)[:, 1]

    # -- persistence: skops for the estimator, JSON for the rest -------------------------------

    def save(self, folder: Path) -> None:
        import skops.io as sio

        folder.mkdir(parents=True, exist_ok=True)
        sio.dump(self.estimator, folder / "churn_model.skops")
        meta = {
            "features": list(self.features),
            "calibration_method": self.calibration_method,
            "reference": self.reference,
            "drift_bins": self.drift_bins,
            "drift_reference": self.drift_reference,
            "training_rows": self.training_rows,
            "training_churn_rate": self.training_churn_rate,
            "importance": self.importance,
            "left_out": self.left_out,
        }
        (folder / "churn_model.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")


def load_model(folder: Path) -> ChurnModel:
    """Load a model saved by :meth:`ChurnModel.save`; only scikit-learn/numpy types are trusted."""
    import skops.io as sio

    path = folder / "churn_model.skops"
    if not path.exists():
        raise FileNotFoundError(f"no churn model at {path}")
    untrusted = sio.get_untrusted_types(file=path)
    foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy.", "scipy."))]
    if foreign:
        raise ValueError(f"{path} holds types outside scikit-learn/numpy/scipy: {foreign}")
    estimator = sio.load(path, trusted=untrusted)
    meta = json.loads((folder / "churn_model.json").read_text(encoding="utf-8"))
    return ChurnModel(
        estimator=estimator,
        features=tuple(meta["features"]),
        calibration_method=meta["calibration_method"],
        reference=meta["reference"],
        drift_bins=meta["drift_bins"],
        drift_reference=meta["drift_reference"],
        training_rows=meta["training_rows"],
        training_churn_rate=meta["training_churn_rate"],
        importance=meta.get("importance", {}),
        left_out=meta.get("left_out", {}),
    )


def _drift_bins(values: np.ndarray, n_bins: int = 10) -> tuple[list[float], list[float]]:
    """Quantile edges (inner ones) and the share per bin, NaN in a bin of its own (the last)."""
    finite = values[~np.isnan(values)]
    if finite.size == 0:
        edges: list[float] = []
    else:
        edges = sorted(set(np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1]).tolist()))
    return edges, _bin_shares(values, edges)


def _bin_shares(values: np.ndarray, edges: Sequence[float]) -> list[float]:
    nan = np.isnan(values)
    idx = np.searchsorted(np.asarray(edges, dtype=float), values[~nan], side="right")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    counts = np.append(counts, float(nan.sum()))
    total = counts.sum()
    return (counts / total).tolist() if total else counts.tolist()


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = 1e-4) -> float:
    """Population stability index between two bin-share vectors (0.1 = some shift, 0.25 = large)."""
    e = np.maximum(np.asarray(expected, dtype=float), floor)
    a = np.maximum(np.asarray(actual, dtype=float), floor)
    return float(np.sum((a - e) * np.log(a / e)))


def drift_report(model: ChurnModel, frame: pl.DataFrame, scores: np.ndarray) -> dict[str, float]:
    """PSI of each binned feature and of the score: training population vs ``frame``."""
    out = {}
    for name, edges in model.drift_bins.items():
        values = scores if name == "churn_probability" else frame.get_column(name).cast(pl.Float64).to_numpy()
        out[name] = psi(model.drift_reference[name], _bin_shares(np.asarray(values, dtype=float), edges))
    return out


def learnable_features(data: pl.DataFrame, wanted: Sequence[str]) -> tuple[tuple[str, ...], dict[str, str]]:
    """The features of ``wanted`` that carry information in ``data``, and why the others were left out.

    A feature nobody has a value for (no marketing events, no tickets: every customer null) or that
    is the same for everyone cannot be learned from; the booster's binning would fail on it, and a
    model card that lists it would claim more than the model knows.
    """
    kept, left_out = [], {}
    for name in wanted:
        values = data.get_column(name).cast(pl.Float64).fill_nan(None).drop_nulls()
        if values.len() == 0:
            left_out[name] = "no customer has a value"
        elif values.n_unique() == 1 and values.len() == data.height:
            left_out[name] = f"the same value ({values[0]:g}) for every customer"
        else:
            kept.append(name)
    return tuple(kept), left_out


def train_churn_model(
    features: pl.DataFrame, labels: pl.DataFrame, params: ChurnModelParams = ChurnModelParams()
) -> ChurnModel:
    """Fit and calibrate on ``features`` joined to ``labels`` (``customer_id``, ``churned``)."""
    data = features.join(labels.select("customer_id", "churned"), on="customer_id", how="inner", maintain_order="left")
    if data.height < MIN_TRAINING_ROWS:
        raise InsufficientDataError(
            f"churn training needs at least {MIN_TRAINING_ROWS} labelled customers, got {data.height}"
        )
    y_all = data.get_column("churned").to_numpy().astype(int)
    rate = float(y_all.mean())
    if rate in (0.0, 1.0):
        raise InsufficientDataError(f"churn training labels are all {int(rate)}: nothing to learn (check the horizon)")
    rng = np.random.default_rng(params.seed)
    if data.height > params.max_training_rows:
        keep, _ = train_test_split(
            np.arange(data.height), train_size=params.max_training_rows, stratify=y_all, random_state=params.seed
        )
        data = data.select(pl.all().gather(np.sort(keep)))
    features, left_out = learnable_features(data, params.features)
    if not features:
        raise InsufficientDataError("no feature has a value that varies between customers: nothing to learn from")
    X = data.select([pl.col(f).cast(pl.Float64) for f in features]).to_numpy()
    y = data.get_column("churned").to_numpy().astype(int)
    fit_idx, cal_idx = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=params.seed)
    booster = HistGradientBoostingClassifier(
        max_iter=params.max_iter,
        learning_rate=params.learning_rate,
        max_leaf_nodes=params.max_leaf_nodes,
        min_samples_leaf=params.min_samples_leaf,
        l2_regularization=params.l2_regularization,
        early_stopping=len(fit_idx) > 10_000,
        random_state=params.seed,
    )
    with _threads(len(fit_idx)):
        booster.fit(X[fit_idx], y[fit_idx])
    method = "isotonic" if len(cal_idx) >= ISOTONIC_MIN_ROWS else "sigmoid"
    calibrated = CalibratedClassifierCV(FrozenEstimator(booster), method=method)
    calibrated.fit(X[cal_idx], y[cal_idx])
    reference = {}
    for i, name in enumerate(features):
        col = X[:, i]
        finite = col[~np.isnan(col)]
        # "Typical" is missing when most customers have no value (no ticket, never engaged).
        typical_missing = finite.size * 2 < col.size
        reference[name] = float("nan") if typical_missing else float(np.median(finite))
    model = ChurnModel(
        estimator=calibrated,
        features=features,
        calibration_method=method,
        reference=reference,
        drift_bins={},
        drift_reference={},
        training_rows=len(y),
        training_churn_rate=float(y.mean()),
        left_out=left_out,
    )
    scores = model.predict(X)
    for name, values in [(f, X[:, i]) for i, f in enumerate(features)] + [("churn_probability", scores)]:
        edges, shares = _drift_bins(values)
        model.drift_bins[name] = edges
        model.drift_reference[name] = shares
    # Importance = mean absolute change of the probability when a feature is set to its reference:
    # the same perturbation the reasons use, averaged over a sample of the training rows.
    sample = X[rng.choice(len(y), size=min(len(y), 5_000), replace=False)]
    base = model.predict(sample)
    for i, name in enumerate(features):
        shifted = sample.copy()
        shifted[:, i] = reference[name]
        model.importance[name] = float(np.mean(np.abs(base - model.predict(shifted))))
    return model


# ----------------------------------------------------------------------------------------------
# reasons
# ----------------------------------------------------------------------------------------------


def explain(model: ChurnModel, frame: pl.DataFrame, *, top: int = 3) -> tuple[np.ndarray, list[str]]:
    """Churn probabilities and, per customer, up to ``top`` reasons joined by '; '.

    Each reason group's contribution is ``p(customer) - p(customer with the group at the reference)``.
    """
    X = model.matrix(frame)
    base = model.predict(X)
    groups = [g for g in REASON_GROUPS if all(f in model.features for f in g.features)]
    index = {f: i for i, f in enumerate(model.features)}
    # A group is a reason only where its statement is true to the customer's own values.
    allowed = frame.select(
        [g.applies(model.reference).fill_null(False).alias(f"_applies_{j}") for j, g in enumerate(groups)]
    ).to_numpy()
    allowed = allowed.astype(bool).reshape(X.shape[0], len(groups))
    contributions = np.full((X.shape[0], len(groups)), -np.inf)
    for j, group in enumerate(groups):
        columns = [index[f] for f in group.features]
        reference = np.array([model.reference[f] for f in group.features], dtype=float)
        # Predicted only where the group may be a reason and setting it to the reference changes the
        # row (each row's prediction is its own, so the others' contributions are what they were:
        # unchanged rows contribute exactly 0).
        changed = ~np.all((X[:, columns] == reference) | (np.isnan(X[:, columns]) & np.isnan(reference)), axis=1)
        rows = np.flatnonzero(allowed[:, j] & changed)
        contributions[allowed[:, j], j] = 0.0
        if rows.size:
            shifted = X[rows].copy()
            shifted[:, columns] = reference
            contributions[rows, j] = base[rows] - model.predict(shifted)
    order = np.argsort(-contributions, axis=1)[:, :top]
    texts = frame.select([g.text.alias(f"_reason_{j}") for j, g in enumerate(groups)])
    picked = []
    for k in range(order.shape[1]):
        chosen = order[:, k]
        strong = contributions[np.arange(len(chosen)), chosen] >= MIN_REASON_CONTRIBUTION
        choice = pl.Series(np.where(strong, chosen, -1))
        expr = pl.lit(None, dtype=pl.String)
        for j in range(len(groups)):
            expr = pl.when(choice == j).then(pl.col(f"_reason_{j}")).otherwise(expr)
        picked.append(expr)
    reasons = texts.select(pl.concat_str(picked, separator="; ", ignore_nulls=True).fill_null("")).to_series().to_list()
    return base, reasons


def band(probability: np.ndarray, medium_from: float, high_from: float) -> list[str]:
    """'low' | 'medium' | 'high' by two thresholds on the calibrated probability."""
    idx = (probability >= medium_from).astype(int) + (probability >= high_from).astype(int)
    return [BAND_ORDER[i] for i in idx]


# ----------------------------------------------------------------------------------------------
# evaluation
# ----------------------------------------------------------------------------------------------


def classification_metrics(y: np.ndarray, score: np.ndarray, *, probabilities: bool = True) -> dict[str, Any]:
    """ROC-AUC, PR-AUC, top-decile lift (any score); Brier only for probabilities."""
    y = np.asarray(y, dtype=int)
    score = np.asarray(score, dtype=float)
    n_top = max(1, math.ceil(0.1 * len(y)))
    top = np.argsort(-score, kind="stable")[:n_top]
    out: dict[str, Any] = {
        "customers": len(y),
        "churn_rate": float(y.mean()),
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
        "top_decile_lift": float(y[top].mean() / y.mean()) if y.mean() > 0 else float("nan"),
    }
    if probabilities:
        out["brier"] = float(brier_score_loss(y, score))
    return out


def calibration_by_decile(y: np.ndarray, probability: np.ndarray) -> pl.DataFrame:
    """decile (1 = lowest predicted), customers, mean_predicted, observed_rate."""
    n = len(y)
    ranks = np.argsort(np.argsort(probability, kind="stable"), kind="stable")
    decile = (ranks * 10 // max(n, 1)) + 1
    return (
        pl.DataFrame({"decile": decile.astype(np.int32), "p": probability, "y": np.asarray(y, dtype=float)})
        .group_by("decile")
        .agg(
            pl.len().cast(pl.Int32).alias("customers"),
            pl.col("p").mean().alias("mean_predicted"),
            pl.col("y").mean().alias("observed_rate"),
        )
        .sort("decile")
    )


def feature_description(name: str) -> str:
    return _FEATURE_DESCRIPTIONS.get(name, name)
