"""Next best action: a rule table (config) turns scores into one action per customer, and each rep's book.

Rules are tried in order, the first whose conditions all hold wins (the config's last rule has no
conditions, so every customer gets one). A condition on a field is a value (equal), a list (one of)
or a string "<op> number" (op one of <, <=, >, >=). A missing value (e.g. no previous score) never
satisfies a condition.
"""

from __future__ import annotations

import re

import polars as pl

from models_ml.scoring_config import ActionRule, ActionSettings

__all__ = ["ACTION_FIELDS", "ACTION_FIELD_SOURCES", "action_reasons", "assign_actions", "rep_book", "usable_rules"]

ACTION_FIELDS = (
    "churn_band",
    "churn_probability",
    "risk_rising",
    "value_percentile",
    "loyalty_tier",
    "points_to_next_tier",
    "last_rating_bad",
    "orders_90d",
    "recency_days",
    "p_alive",
)
# Fields computed from a kind of source data a company may not have: a rule that needs one is
# skipped for a company without it (it could never fire, or fire on a default, not on a fact).
ACTION_FIELD_SOURCES = {"last_rating_bad": "support"}
_COMPARISON = re.compile(r"^\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")


def _condition(field: str, expected: object, rule: ActionRule) -> pl.Expr:
    if field not in ACTION_FIELDS:
        raise ValueError(f"action rule '{rule.action}': unknown field '{field}'; known: {', '.join(ACTION_FIELDS)}")
    col = pl.col(field)
    if isinstance(expected, list):
        return col.is_in([str(v) for v in expected]).fill_null(False)
    if isinstance(expected, bool):
        return (col == expected).fill_null(False)
    if isinstance(expected, str):
        match = _COMPARISON.match(expected)
        if match:
            op, number = match.group(1), float(match.group(2))
            expr = {"<": col < number, "<=": col <= number, ">": col > number, ">=": col >= number}[op]
            return expr.fill_null(False)
        return (col == expected).fill_null(False)
    return (col == expected).fill_null(False)


def usable_rules(settings: ActionSettings, sources: dict[str, bool] | None = None) -> tuple[list[int], dict[str, str]]:
    """Indexes of the rules a company's data can decide, and the skipped ones with why."""
    sources = sources or {}
    usable, skipped = [], {}
    for i, rule in enumerate(settings.rules):
        missing = sorted(
            {ACTION_FIELD_SOURCES[f] for f in rule.when if not sources.get(ACTION_FIELD_SOURCES.get(f), True)}
        )
        if missing:
            skipped[f"{rule.action} (rule {i + 1})"] = f"needs {', '.join(missing)} data, which this company has not"
        else:
            usable.append(i)
    return usable, skipped


def assign_actions(
    frame: pl.DataFrame, settings: ActionSettings, sources: dict[str, bool] | None = None
) -> pl.DataFrame:
    """Add ``next_action``, ``action_priority``, ``value_at_stake`` and ``action_rule`` (index in the table).

    ``frame`` needs the fields the rules use plus ``clv_12m`` and ``churn_probability``. Rules whose
    fields need data the company has not (``sources``) are skipped (:func:`usable_rules`).
    """
    usable, _ = usable_rules(settings, sources)
    rule_index = None
    for i, rule in reversed([(i, settings.rules[i]) for i in usable]):
        cond = pl.lit(True)
        for field, expected in rule.when.items():
            cond = cond & _condition(field, expected, rule)
        rule_index = pl.when(cond).then(pl.lit(i)).otherwise(rule_index if rule_index is not None else pl.lit(None))
    rules = pl.DataFrame(
        {
            "action_rule": list(range(len(settings.rules))),
            "next_action": [r.action for r in settings.rules],
            "action_priority": [r.priority for r in settings.rules],
            "_risk": [r.value_at_stake == "risk" for r in settings.rules],
            "_uplift": [r.uplift for r in settings.rules],
        }
    ).with_columns(pl.col("action_rule").cast(pl.Int32), pl.col("action_priority").cast(pl.Int32))
    value = pl.col("clv_12m").fill_null(0)
    return (
        frame.with_columns(rule_index.cast(pl.Int32).alias("action_rule"))
        .join(rules, on="action_rule", how="left", maintain_order="left")
        .with_columns(
            value_at_stake=pl.when(pl.col("_risk"))
            .then(value * pl.col("churn_probability").fill_null(0))
            .otherwise(value * pl.col("_uplift"))
        )
        .drop("_risk", "_uplift")
    )


def rep_book(scores: pl.DataFrame, customers: pl.DataFrame) -> pl.DataFrame:
    """One row per customer with an owner rep, ranked within the rep's book by value at stake.

    ``customers``: customer_id, customer_name, rep_id, rep_name. Ties: more urgent priority first.
    """
    book = scores.join(customers, on="customer_id", how="inner", maintain_order="left").filter(
        pl.col("rep_id").is_not_null()
    )
    return (
        book.sort(
            ["rep_id", "value_at_stake", "action_priority", "customer_id"], descending=[False, True, False, False]
        )
        .with_columns(pl.int_range(1, pl.len() + 1).over("rep_id").cast(pl.Int32).alias("rank_in_book"))
        .select(
            "rep_id",
            "rep_name",
            "rank_in_book",
            "customer_id",
            "customer_name",
            "next_action",
            "action_priority",
            "value_at_stake",
            pl.col("action_reason").alias("reason"),
            "churn_probability",
            "clv_12m",
            "loyalty_tier",
        )
    )


def action_reasons(frame: pl.DataFrame, settings: ActionSettings) -> pl.Series:
    """Why the action: the churn reasons for risk actions, the facts behind growth actions.

    Needs action_rule, churn_reasons, churn_probability, clv_12m, next_tier, next_tier_benefits,
    points_to_next_tier, orders_90d.
    """
    is_risk = pl.col("action_rule").replace_strict(
        {i: r.value_at_stake == "risk" for i, r in enumerate(settings.rules)}, return_dtype=pl.Boolean
    )
    pct = (pl.col("churn_probability") * 100).round(0).cast(pl.Int64).cast(pl.String)
    growth = (
        pl.when(
            pl.col("points_to_next_tier").is_not_null()
            & (pl.col("points_to_next_tier") <= 5)
            & pl.col("next_tier").is_not_null()
        )
        .then(
            pl.format(
                "{} loyalty points to {} ({})",
                pl.col("points_to_next_tier").round(1),
                pl.col("next_tier"),
                pl.col("next_tier_benefits"),
            )
        )
        .when(pl.col("orders_90d") >= 1)
        .then(
            pl.format(
                "{} orders in the last 90 days; churn risk {}%; 12-month value {}",
                pl.col("orders_90d").cast(pl.Int64),
                pct,
                pl.col("clv_12m").round(0).cast(pl.Int64),
            )
        )
        .otherwise(pl.format("churn risk {}%; 12-month value {}", pct, pl.col("clv_12m").round(0).cast(pl.Int64)))
    )
    return frame.select(
        pl.when(is_risk & (pl.col("churn_reasons").fill_null("") != ""))
        .then(pl.format("churn risk {}%: {}", pct, pl.col("churn_reasons")))
        .when(is_risk)
        .then(pl.format("churn risk {}%", pct))
        .otherwise(growth)
        .alias("action_reason")
    ).to_series()
