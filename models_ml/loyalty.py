"""Loyalty: a 0-100 score, tiers with hysteresis, and the benefits each tier costs.

* **Score** = 100 x weighted mean of three components, each in [0, 1]:
  *value* (percentile rank of expected 12-month value and of last-year revenue),
  *engagement* (percentile rank of decayed marketing engagement and of recency, recent = high),
  *satisfaction* ((good + 1.5) / (good + bad + 2) support ratings, so no rating = 0.75, minus 0.1 per
  ticket that took over five days). Percentile ranks make the score comparable between nights even
  when the currency or the size of the company changes.
* **A company without a source** keeps what it can measure: without marketing events, engagement
  is recency alone; without support tickets, satisfaction is dropped and the weights are
  re-normalised over the components present (a constant 0.75 for everyone would only compress the
  scale). :func:`loyalty_components` says which components were used.
* **Tiers** Bronze < Silver < Gold < Platinum by lower bounds, with a hysteresis band ``h``: a customer
  moves up to tier t only when the score reaches ``bound(t) + h`` and down out of tier t only when it
  falls below ``bound(t) - h``; inside the band the previous tier stays.
* **Benefits** come from config (discount %, payment deferral days, free shipping, priority support);
  their projected yearly cost per customer uses the customer's expected orders and value.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from models_ml.scoring_config import TIERS, BenefitSettings, LoyaltySettings, TierBenefits

__all__ = [
    "assign_tiers",
    "benefits_text",
    "loyalty_components",
    "loyalty_scores",
    "points_to_next_tier",
    "tier_costs",
    "with_benefits",
]


def _pct_rank(expr: pl.Expr) -> pl.Expr:
    # Average rank scaled to [0, 1]; a single customer sits in the middle.
    n = pl.len()
    return pl.when(n > 1).then((expr.rank("average") - 1) / (n - 1)).otherwise(0.5)


def loyalty_components(settings: LoyaltySettings, sources: dict[str, bool] | None = None) -> dict[str, float]:
    """The components used and their weights, re-normalised to sum to 1 over the components present."""
    sources = sources or {}
    weights = {k: v for k, v in settings.weights.items() if v > 0}
    if not sources.get("support", True):
        weights.pop("satisfaction", None)
    if not weights:
        weights = {"value": 1.0}
    total = sum(weights.values())
    return {k: v / total for k, v in weights.items()}


def loyalty_scores(frame: pl.DataFrame, settings: LoyaltySettings, sources: dict[str, bool] | None = None) -> pl.Series:
    """Score 0..100 from clv_12m, revenue_365d, engagement_decayed, recency_days, good/bad ratings, slow tickets.

    ``sources`` (kind of data -> present; default: all) leaves out what a company has no data for.
    """
    w = loyalty_components(settings, sources)
    recency = _pct_rank(-pl.col("recency_days").fill_null(pl.col("recency_days").max()))
    has_marketing = (sources or {}).get("marketing", True)
    components = frame.select(
        value=(_pct_rank(pl.col("clv_12m").fill_null(0)) + _pct_rank(pl.col("revenue_365d").fill_null(0))) / 2,
        engagement=(_pct_rank(pl.col("engagement_decayed").fill_null(0)) + recency) / 2 if has_marketing else recency,
        satisfaction=(
            (pl.col("good_ratings_lifetime").fill_null(0) + 1.5)
            / (pl.col("good_ratings_lifetime").fill_null(0) + pl.col("bad_ratings_lifetime").fill_null(0) + 2)
            - 0.1 * pl.col("slow_tickets_lifetime").fill_null(0)
        ).clip(0, 1),
    )
    score = (
        w.get("value", 0) * components["value"]
        + w.get("engagement", 0) * components["engagement"]
        + w.get("satisfaction", 0) * components["satisfaction"]
    ) * 100
    return score.clip(0, 100).alias("loyalty_score")


def assign_tiers(score: np.ndarray, previous: list[str | None] | None, settings: LoyaltySettings) -> list[str]:
    """Tier per customer; ``previous`` (same order, None = new customer) is kept inside the hysteresis band."""
    bounds = np.asarray(settings.lower_bounds())
    h = settings.hysteresis
    s = np.asarray(score, dtype=float)
    # highest tier whose bound + h is reached (moving up needs the margin) ...
    up = (s[:, None] >= bounds[None, :] + np.where(np.arange(len(bounds)) == 0, 0, h)).sum(axis=1) - 1
    # ... and highest tier whose bound - h is still reached (moving down needs the margin)
    down = (s[:, None] >= bounds[None, :] - np.where(np.arange(len(bounds)) == 0, 0, h)).sum(axis=1) - 1
    plain = (s[:, None] >= bounds[None, :]).sum(axis=1) - 1
    index = {t: i for i, t in enumerate(TIERS)}
    # the previous tier's position, -1 for a new customer (or a tier no longer offered)
    prev = np.array([-1 if p is None else index.get(p, -1) for p in (previous or [None] * len(s))], dtype=np.int64)
    kept = np.clip(prev, up, down)  # np.clip(a, lo, hi) is min(max(a, lo), hi), as for one customer
    chosen = np.where(prev < 0, plain, kept)
    names = np.array(TIERS, dtype=object)
    return names[chosen].tolist()


def points_to_next_tier(score: np.ndarray, tiers: list[str], settings: LoyaltySettings) -> np.ndarray:
    """Score points still needed for the next tier (including the hysteresis margin); NaN at the top."""
    bounds = np.asarray([*settings.lower_bounds(), np.nan], dtype=float)
    index = {t: i for i, t in enumerate(TIERS)}
    j = np.array([index[t] for t in tiers], dtype=np.int64)
    needed = bounds[j + 1] + settings.hysteresis - np.asarray(score, dtype=float)
    top = j + 1 >= len(TIERS)
    return np.where(top, np.nan, np.fmax(0.0, needed))  # fmax: as max(0.0, x) for a missing score


def benefits_text(benefits: TierBenefits) -> str:
    parts = []
    if benefits.discount_pct:
        parts.append(f"{benefits.discount_pct:g}% discount")
    if benefits.payment_deferral_days:
        parts.append(f"{benefits.payment_deferral_days} extra days to pay")
    if benefits.free_shipping:
        parts.append("free shipping")
    if benefits.priority_support:
        parts.append("priority support")
    return "; ".join(parts) if parts else "no benefits"


def with_benefits(frame: pl.DataFrame, settings: BenefitSettings) -> pl.DataFrame:
    """Add ``benefits`` and ``benefits_yearly_cost`` by ``loyalty_tier`` (needs clv_12m, expected_purchases_365d).

    Yearly cost = discount % x expected value + shipping cost x expected orders (free shipping)
    + expected value x cost of capital x deferral days / 365 + priority support's yearly cost.
    """
    rows = []
    for tier in TIERS:
        b = settings.tiers[tier]
        rows.append(
            {
                "loyalty_tier": tier,
                "benefits": benefits_text(b),
                "_discount": b.discount_pct / 100,
                "_shipping": settings.shipping_cost_per_order if b.free_shipping else 0.0,
                "_deferral": settings.cost_of_capital_annual * b.payment_deferral_days / 365,
                "_support": settings.priority_support_cost_per_year if b.priority_support else 0.0,
            }
        )
    policy = pl.DataFrame(rows)
    out = frame.join(policy, on="loyalty_tier", how="left", maintain_order="left")
    value = pl.col("clv_12m").fill_null(0)
    orders = pl.col("expected_purchases_365d").fill_null(0)
    return out.with_columns(
        benefits_yearly_cost=value * (pl.col("_discount") + pl.col("_deferral"))
        + orders * pl.col("_shipping")
        + pl.col("_support")
    ).drop("_discount", "_shipping", "_deferral", "_support")


def tier_costs(scores: pl.DataFrame) -> pl.DataFrame:
    """loyalty_tier, customers, yearly_cost: one row per tier (zero rows included)."""
    agg = scores.group_by("loyalty_tier").agg(
        pl.len().cast(pl.Int32).alias("customers"), pl.col("benefits_yearly_cost").sum().alias("yearly_cost")
    )
    return (
        pl.DataFrame({"loyalty_tier": list(TIERS), "_order": list(range(len(TIERS)))})
        .join(agg, on="loyalty_tier", how="left", maintain_order="left")
        .with_columns(pl.col("customers").fill_null(0), pl.col("yearly_cost").fill_null(0.0))
        .sort("_order")
        .drop("_order")
    )
