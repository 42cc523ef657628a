"""Next best action: first matching rule wins, comparisons, catch-all, value at stake, the rep's book."""

import polars as pl
import pytest

from crm.settings import ConfigError, load_scoring_config
from models_ml.actions import assign_actions, rep_book
from models_ml.scoring_config import ActionSettings

RULES = ActionSettings(
    rules=[
        {"action": "retention call", "priority": 1, "when": {"churn_band": ["high"], "value_percentile": ">= 0.8"}},
        {"action": "win-back offer", "priority": 2, "when": {"churn_band": "high"}},
        {
            "action": "upsell",
            "priority": 3,
            "when": {"risk_rising": False, "value_percentile": "> 0.5"},
            "value_at_stake": "growth",
            "uplift": 0.1,
        },
        {"action": "keep in touch", "priority": 9, "when": {}, "value_at_stake": "growth", "uplift": 0.0},
    ]
)


def _frame():
    return pl.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "churn_band": ["high", "high", "low", "low", "medium"],
            "value_percentile": [0.9, 0.5, 0.6, 0.6, 0.2],
            "risk_rising": [True, False, False, None, True],
            "churn_probability": [0.8, 0.7, 0.1, 0.1, 0.4],
            "clv_12m": [1000.0, 200.0, 500.0, 500.0, 50.0],
        }
    )


def test_first_matching_rule_wins_and_everyone_gets_one_action():
    out = assign_actions(_frame(), RULES)
    assert out["next_action"].to_list() == [
        "retention call",
        "win-back offer",
        "upsell",
        "keep in touch",
        "keep in touch",
    ]
    assert out["action_priority"].to_list() == [1, 2, 3, 9, 9]  # d: a missing value never matches


def test_value_at_stake_is_risk_or_growth():
    out = assign_actions(_frame(), RULES)
    assert out["value_at_stake"].to_list() == pytest.approx([800.0, 140.0, 50.0, 0.0, 0.0])


def test_unknown_fields_are_refused_with_the_rule_named():
    bad = ActionSettings(
        rules=[{"action": "x", "priority": 1, "when": {"colour": "red"}}, {"action": "y", "priority": 2, "when": {}}]
    )
    with pytest.raises(ValueError, match="action rule 'x': unknown field 'colour'"):
        assign_actions(_frame(), bad)


def test_rules_must_end_with_a_catch_all():
    with pytest.raises(ValueError, match="last rule must have an empty"):
        ActionSettings(rules=[{"action": "x", "priority": 1, "when": {"churn_band": "high"}}])


def test_rep_book_ranks_by_value_at_stake_within_each_rep():
    scores = assign_actions(_frame(), RULES).with_columns(action_reason=pl.lit("r"), loyalty_tier=pl.lit("Gold"))
    people = pl.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "customer_name": list("ABCDE"),
            "rep_id": ["1", "1", "1", "2", None],
            "rep_name": ["R1", "R1", "R1", "R2", None],
        }
    )
    book = rep_book(scores, people)
    assert book.filter(pl.col("rep_id") == "1")["customer_id"].to_list() == ["a", "b", "c"]
    assert book.filter(pl.col("rep_id") == "1")["rank_in_book"].to_list() == [1, 2, 3]
    assert "e" not in book["customer_id"].to_list()  # no owner rep, no book
    assert book.columns == [
        "rep_id",
        "rep_name",
        "rank_in_book",
        "customer_id",
        "customer_name",
        "next_action",
        "action_priority",
        "value_at_stake",
        "reason",
        "churn_probability",
        "clv_12m",
        "loyalty_tier",
    ]


def test_a_broken_config_names_the_file(tmp_path):
    path = tmp_path / "scoring.yml"
    path.write_text("churn: {horizon_days: 3}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=str(path)):
        load_scoring_config(path)


def test_the_shipped_rule_table_covers_every_customer():
    cfg = load_scoring_config()
    assert cfg.actions.rules[-1].when == {}
