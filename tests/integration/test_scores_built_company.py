"""Scores on the session's built company (2,000 persons, one year, built through `crm build`).

With a year of history and H = 90 the backtest trains at T-180 (about 1,000 customers) and
evaluates at T-90 (about 1,500, 150 a decile). Calibration tolerance: every decile's observed churn
within 0.15 of its mean prediction (three binomial standard deviations at 150 customers are 0.12,
plus the model's own error), and within 0.07 on average.
"""

import shutil

import dagster as dg
import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from crm.settings import DEFAULT_SCORING_CONFIG
from pipelines.defs.scoring.assets import GATE_CHECK, SCORING_ASSETS
from pipelines.resources import ScoringResource, WarehouseResource

SCORE_COLUMNS = {
    "customer_id": "VARCHAR",
    "scored_as_of": "DATE",
    "churn_probability": "DOUBLE",
    "churn_band": "VARCHAR",
    "churn_reasons": "VARCHAR",
    "p_alive": "DOUBLE",
    "expected_purchases_90d": "DOUBLE",
    "expected_purchases_365d": "DOUBLE",
    "expected_spend_per_order": "DOUBLE",
    "clv_12m": "DOUBLE",
    "loyalty_score": "DOUBLE",
    "loyalty_tier": "VARCHAR",
    "benefits": "VARCHAR",
    "benefits_yearly_cost": "DOUBLE",
    "next_action": "VARCHAR",
    "action_priority": "INTEGER",
    "model_version": "VARCHAR",
}
REP_COLUMNS = {
    "rep_id": "VARCHAR",
    "rep_name": "VARCHAR",
    "rank_in_book": "INTEGER",
    "customer_id": "VARCHAR",
    "customer_name": "VARCHAR",
    "next_action": "VARCHAR",
    "action_priority": "INTEGER",
    "value_at_stake": "DOUBLE",
    "reason": "VARCHAR",
    "churn_probability": "DOUBLE",
    "clv_12m": "DOUBLE",
    "loyalty_tier": "VARCHAR",
}


def _types(con, table):
    return {
        name: typ
        for name, typ in con.execute(
            "select column_name, data_type from information_schema.columns where table_schema || '.' || table_name = ?",
            [table],
        ).fetchall()
    }


@pytest.fixture(scope="module")
def warehouse(built_company):
    con = duckdb.connect(str(built_company.warehouse), read_only=True)
    yield con
    con.close()


def test_the_build_published_a_model_and_scored_every_buyer(built_company, warehouse):
    assert not [f for f in built_company.outcome.failures if "scor" in f or "churn" in f], (
        built_company.outcome.failures
    )
    version, status, card = warehouse.execute(
        "select model_version, status, card_markdown from ml.model_registry"
    ).fetchall()[0]
    assert status == "current" and "## Backtest" in card
    folder = built_company.settings.data_dir / "models" / version
    assert (folder / "churn_model.skops").exists() and (folder / "model_card.md").read_text() == card
    for table, columns in (("marts.customer_scores", SCORE_COLUMNS), ("marts.rep_actions", REP_COLUMNS)):
        types = _types(warehouse, table)
        assert {k: types.get(k) for k in columns} == columns
    scored, buyers, versions, bad = warehouse.execute(
        """select count(*), (select count(distinct customer_id) from marts.orders where customer_id is not null),
                  count(distinct model_version),
                  count(*) filter (where churn_probability not between 0 and 1 or clv_12m < 0 or p_alive > 1
                                   or loyalty_score not between 0 and 100 or churn_band not in ('low', 'medium', 'high'))
           from marts.customer_scores"""
    ).fetchall()[0]
    assert scored == buyers and versions == 1 and bad == 0


def test_customer_360_carries_the_scores(warehouse):
    joined, scored, mismatched = warehouse.execute(
        """select count(c.churn_probability), (select count(*) from marts.customer_scores),
                  count(*) filter (where c.loyalty_tier is distinct from s.loyalty_tier
                                   or c.next_action is distinct from s.next_action)
           from marts.customer_360 c join marts.customer_scores s using (customer_id)"""
    ).fetchall()[0]
    assert joined == scored and mismatched == 0


def test_every_rep_book_is_ranked_by_value_at_stake(warehouse):
    out_of_order = warehouse.execute(
        """select count(*) from (
               select value_at_stake, lag(value_at_stake) over (partition by rep_id order by rank_in_book) as before
               from marts.rep_actions) where value_at_stake > before"""
    ).fetchall()[0][0]
    reps, ranks_ok = warehouse.execute(
        """select count(distinct rep_id), bool_and(n = top) from (
               select rep_id, count(*) as n, max(rank_in_book) as top from marts.rep_actions group by rep_id)"""
    ).fetchall()[0]
    assert out_of_order == 0 and reps > 1 and ranks_ok


def test_calibration_on_the_small_company(warehouse):
    rows = warehouse.execute(
        """select decile, customers, mean_predicted, observed_rate from ml.churn_calibration
           where model_version = (select model_version from ml.model_registry where status = 'current')
           order by decile"""
    ).fetchall()
    assert [r[0] for r in rows] == list(range(1, 11)) and min(r[1] for r in rows) >= 100
    gaps = [abs(r[2] - r[3]) for r in rows]
    assert max(gaps) <= 0.15, rows
    assert sum(gaps) / len(gaps) <= 0.07, rows


def _copy(built_company, tmp_path):
    target = tmp_path / "crm.duckdb"
    shutil.copyfile(built_company.warehouse, target)
    models = tmp_path / "models"
    shutil.copytree(built_company.settings.data_dir / "models", models)
    return target, models


def _materialize(target, models, config_path):
    scoring = ScoringResource(models_dir=str(models), config_path=str(config_path))
    return dg.materialize(
        SCORING_ASSETS,
        resources={"scoring": scoring, "warehouse": WarehouseResource(path=str(target))},
        run_config={"ops": {"ml__churn_model": {"config": {"force_retrain": True}}}},
        raise_on_error=False,
    )


def _state(target):
    con = duckdb.connect(str(target), read_only=True)
    try:
        current = con.execute("select model_version from ml.model_registry where status = 'current'").fetchall()
        scored_by = con.execute("select distinct model_version from ml.customer_scores").fetchall()
        statuses = dict(con.execute("select status, count(*) from ml.model_registry group by 1").fetchall())
    finally:
        con.close()
    return current, scored_by, statuses


def test_the_gate_blocks_a_deliberately_worse_model(built_company, tmp_path):
    target, models = _copy(built_company, tmp_path)
    before_current, _, _ = _state(target)

    # A retrained model as good as the current one is published and scores the customers ...
    same = _materialize(target, models, DEFAULT_SCORING_CONFIG)
    assert same.success
    current, scored_by, _ = _state(target)
    assert current != before_current and scored_by == current

    # ... one that only knows whether the customer is a business is refused, and nothing is scored.
    worse_config = yaml.safe_load(DEFAULT_SCORING_CONFIG.read_text())
    worse_config["churn"]["model"].update({"features": ["is_b2b"], "max_iter": 1})
    worse_path = tmp_path / "worse.yml"
    worse_path.write_text(yaml.safe_dump(worse_config))
    worse = _materialize(target, models, worse_path)
    checks = {e.check_name: e.passed for e in worse.get_asset_check_evaluations()}
    assert checks == {GATE_CHECK: False}
    materialized = {e.asset_key.to_user_string() for e in worse.get_asset_materialization_events()}
    assert "ml/customer_scores" not in materialized
    after_current, after_scored, statuses = _state(target)
    assert after_current == current and after_scored == current
    assert statuses["rejected"] == 1


def test_crm_evaluate_scores_against_the_oracle(built_company, tmp_path, monkeypatch):
    from pipelines.cli import app

    monkeypatch.setenv("CRM_WAREHOUSE_PATH", str(built_company.warehouse))
    monkeypatch.setenv("CRM_GROUND_TRUTH_DIR", str(built_company.ground_truth))
    report = tmp_path / "scores.md"
    result = CliRunner().invoke(app, ["evaluate", "scores", "--json", "--report", str(report)])
    assert result.exit_code == 0, result.output
    import json

    out = json.loads(result.output[result.output.index("{") :])
    churn = out["churn"]
    assert out["oracle_coverage"] > 0.95
    # the oracle is the ceiling; the model beats chance clearly
    assert churn["oracle"]["roc_auc"] >= churn["model"]["roc_auc"] > 0.7
    assert out["revenue"]["true_12m"] > 0 and out["revenue_forecast_12m"] > 0
    text = report.read_text()
    assert "| oracle |" in text and "| baseline_recency |" in text
