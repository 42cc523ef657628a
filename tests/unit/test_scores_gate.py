"""The publishing gate and the retraining cadence (pure decisions; the Dagster check is in
tests/integration/test_scores_built_company.py)."""

from datetime import date, datetime

from crm.scoring.service import RegisteredModel, quality_gate, training_due
from crm.settings import load_scoring_config

CONFIG = load_scoring_config()
CURRENT = RegisteredModel("churn-old", datetime(2024, 12, 1), date(2024, 10, 1), 90, 0.80, 0.15)


def test_a_first_model_is_published():
    assert quality_gate({"roc_auc": 0.6, "brier": 0.3}, None, CONFIG).passed


def test_a_model_as_good_within_tolerance_is_published():
    assert quality_gate({"roc_auc": 0.79, "brier": 0.155}, CURRENT, CONFIG).passed


def test_a_worse_model_is_rejected_with_the_numbers():
    auc = quality_gate({"roc_auc": 0.70, "brier": 0.15}, CURRENT, CONFIG)
    assert not auc.passed and "ROC-AUC 0.7000 < current 0.8000" in auc.message and "churn-old" in auc.message
    brier = quality_gate({"roc_auc": 0.81, "brier": 0.20}, CURRENT, CONFIG)
    assert not brier.passed and "Brier" in brier.message


def test_a_new_horizon_is_not_judged_against_the_old_one():
    longer = CONFIG.model_copy(update={"churn": CONFIG.churn.model_copy(update={"horizon_days": 60})})
    assert quality_gate({"roc_auc": 0.6, "brier": 0.3}, CURRENT, longer).passed


def test_retraining_follows_the_cadence_in_days_of_data():
    # the current model trained at 2024-10-01 = as_of - 90; a week of new data later it is due
    assert training_due(None, date(2024, 12, 30), CONFIG) == "no published model yet"
    assert training_due(CURRENT, date(2024, 12, 30), CONFIG) is None
    assert training_due(CURRENT, date(2025, 1, 5), CONFIG) is None
    assert "7 days old" in training_due(CURRENT, date(2025, 1, 6), CONFIG)
    longer = CONFIG.model_copy(update={"churn": CONFIG.churn.model_copy(update={"horizon_days": 60})})
    assert "horizon changed" in training_due(CURRENT, date(2024, 12, 30), longer)


def test_a_young_company_is_told_why_no_model_is_trained():
    import duckdb
    import pytest

    from crm.scoring.service import NotEnoughHistoryError, check_history

    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        "create table marts.orders as select 'A' as customer_id, date '2024-01-01' + cast(i as integer) as order_day "
        "from range(150) t(i)"
    )
    with pytest.raises(NotEnoughHistoryError, match="trains at 2023-12-01 .* history starts 2024-01-01"):
        check_history(con, date(2024, 5, 29), 90)
    check_history(con, date(2024, 12, 30), 90)  # a year is enough
