"""Dagster wiring of the scores: training (weekly by default, gated), nightly scoring, the scored marts.

Asset graph (keys)::

    ["marts", orders | marketing_events | support_tickets | customers]     dbt op `dbt_warehouse`
      -> ["ml", "churn_model"]        Python op `churn_model`: retrain when due, backtest, blocking gate
      -> ["marts", "customer_scores"], ["marts", "rep_actions"], ["ml", "tier_benefits_cost"]
                                      Python op `customer_scoring`: every night, drift check (warn)
      -> ["marts", "customer_360"], ["marts", "rep_performance"]          dbt op `dbt_scored_marts`

customer_360 reads ``source('marts', 'customer_scores')``, so dagster-dbt makes the scoring asset
its upstream: the third dbt selection runs after the scores, as identity runs between staging and
the marts. When the gate rejects a candidate model the blocking check stops the run before scoring:
last night's scores and customer_360 stay as they were, and the registry records the rejection.

Retraining: the training asset reuses the current model until its training cut-off is
``retrain.cadence_days`` (config/scoring.yml, default 7) days of data old, so the nightly job
retrains weekly without a second schedule; ``crm build`` runs the same graph.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
from dagster import AssetExecutionContext
from dagster_dbt import DbtProject

from models_ml.scoring_config import load_scoring_config, scoring_config_path
from pipelines.defs.scoring.service import (
    NoPublishedModelError,
    NotEnoughHistoryError,
    connect_warehouse,
    score_and_publish,
    train_and_register,
    worst_drift,
)
from pipelines.defs.warehouse.assets import DBT_PROJECT_DIR, SCORED_MARTS_SELECT, dbt_build_step
from pipelines.settings import Settings

CHURN_MODEL = dg.AssetKey(["ml", "churn_model"])
CUSTOMER_SCORES = dg.AssetKey(["marts", "customer_scores"])
REP_ACTIONS = dg.AssetKey(["marts", "rep_actions"])
TIER_COSTS = dg.AssetKey(["ml", "tier_benefits_cost"])
FACTS = [dg.AssetKey(["marts", name]) for name in ("orders", "marketing_events", "support_tickets", "customers")]
GATE_CHECK = "no_worse_than_current_model"
DRIFT_CHECK = "population_drift"


class ScoringResource(dg.ConfigurableResource):
    """Where the scores read and write: the build warehouse, the model folder, the scoring config,
    and (for the simulated company only) the ground truth the model card's oracle row needs."""

    warehouse_path: str
    models_dir: str
    config_path: str
    ground_truth_dir: str = ""

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = connect_warehouse(self.warehouse_path)
        try:
            yield con
        finally:
            con.close()

    def ground_truth(self) -> Path | None:
        return Path(self.ground_truth_dir) if self.ground_truth_dir else None


class TrainingConfig(dg.Config):
    """Run-time knobs: force a retrain regardless of the cadence."""

    force_retrain: bool = False


def build_scoring_assets() -> list:
    @dg.asset(
        key=CHURN_MODEL,
        deps=FACTS,
        group_name="scoring",
        kinds={"python", "scikitlearn"},
        description="The published churn model (ml.model_registry, ml.churn_calibration, ml.churn_drivers, "
                    "skops file + model card under data/models/).",
        check_specs=[dg.AssetCheckSpec(
            GATE_CHECK, asset=CHURN_MODEL, blocking=True,
            description="A retrained model must not be worse than the current one on the backtest (ROC-AUC, Brier).",
        )],
    )
    def churn_model(context: AssetExecutionContext, config: TrainingConfig, scoring: ScoringResource):
        settings = load_scoring_config(scoring.config_path)
        try:
            with scoring.connect() as con:
                outcome = train_and_register(
                    con, settings, Path(scoring.models_dir), force=config.force_retrain,
                    ground_truth=scoring.ground_truth(),
                )
        except NotEnoughHistoryError as exc:
            # A young company: nothing to publish yet, which is not a failed night.
            context.log.warning(f"churn model not trained: {exc}")
            yield dg.MaterializeResult(asset_key=CHURN_MODEL, metadata={"status": "not trained", "reason": str(exc)})
            yield dg.AssetCheckResult(asset_key=CHURN_MODEL, check_name=GATE_CHECK, passed=True,
                                      metadata={"gate": "no candidate: " + str(exc)})
            return
        context.log.info(f"churn model {outcome.model_version}: {outcome.status} ({outcome.reason}); {outcome.gate.message}")
        model = outcome.metrics.get("model", {})
        yield dg.MaterializeResult(
            asset_key=CHURN_MODEL,
            metadata={
                "model_version": outcome.model_version,
                "status": outcome.status,
                "reason": outcome.reason,
                **{f"backtest_{k}": float(model[k]) for k in ("roc_auc", "pr_auc", "brier", "top_decile_lift") if k in model},
            },
        )
        yield dg.AssetCheckResult(
            asset_key=CHURN_MODEL,
            check_name=GATE_CHECK,
            passed=outcome.status != "rejected",
            metadata={"model_version": outcome.model_version, "gate": outcome.gate.message},
        )

    @dg.multi_asset(
        name="customer_scoring",
        specs=[
            dg.AssetSpec(CUSTOMER_SCORES, deps=[CHURN_MODEL, *FACTS], group_name="scoring", kinds={"python", "duckdb"},
                         description="Churn, value, loyalty tier, benefits and next action per customer who has ordered."),
            dg.AssetSpec(REP_ACTIONS, deps=[CHURN_MODEL, *FACTS], group_name="scoring", kinds={"python", "duckdb"},
                         description="Each rep's customers ranked by value at stake, with the action and why."),
            dg.AssetSpec(TIER_COSTS, deps=[CHURN_MODEL, *FACTS], group_name="scoring", kinds={"python", "duckdb"},
                         description="Customers and projected yearly cost of the benefits per loyalty tier."),
        ],
        check_specs=[dg.AssetCheckSpec(
            DRIFT_CHECK, asset=CUSTOMER_SCORES, blocking=False,
            description="Population stability index of key features and the score vs the training population (warns).",
        )],
    )
    def customer_scoring(context: AssetExecutionContext, scoring: ScoringResource):
        settings = load_scoring_config(scoring.config_path)
        try:
            with scoring.connect() as con:
                outcome = score_and_publish(con, settings, Path(scoring.models_dir))
        except NoPublishedModelError as exc:
            context.log.warning(f"customers not scored: {exc}")
            for key in (CUSTOMER_SCORES, REP_ACTIONS, TIER_COSTS):
                yield dg.MaterializeResult(asset_key=key, metadata={"status": "not scored", "reason": str(exc)})
            yield dg.AssetCheckResult(asset_key=CUSTOMER_SCORES, check_name=DRIFT_CHECK, passed=True,
                                      severity=dg.AssetCheckSeverity.WARN, metadata={"reason": str(exc)})
            return
        worst, value = worst_drift(outcome.drift)
        meta = {"model_version": outcome.model_version, "scored_as_of": str(outcome.scored_as_of)}
        yield dg.MaterializeResult(asset_key=CUSTOMER_SCORES, metadata={
            **meta, "customers": outcome.customers,
            **{f"band_{k}": v for k, v in outcome.bands.items()}, **{f"tier_{k}": v for k, v in outcome.tiers.items()},
        })
        yield dg.MaterializeResult(asset_key=REP_ACTIONS, metadata={**meta, "rows": outcome.rep_actions})
        yield dg.MaterializeResult(asset_key=TIER_COSTS, metadata=meta)
        yield dg.AssetCheckResult(
            asset_key=CUSTOMER_SCORES,
            check_name=DRIFT_CHECK,
            passed=value <= settings.drift.psi_warn,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"worst_feature": worst, "worst_psi": float(value),
                      **{f"psi_{k}": float(v) for k, v in outcome.drift.items()}},
        )

    return [churn_model, customer_scoring]


def build_scored_marts_assets(project: DbtProject) -> list:
    # customer_360 (joins the scores) and the marts that read it, with their tests
    return [dbt_build_step(project, "dbt_scored_marts", SCORED_MARTS_SELECT)]


def build_scoring_defs(settings: Settings) -> dg.Definitions:
    """The scoring assets and their resource, to be merged with the warehouse defs (which own `dbt`)."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target="duckdb")
    ground_truth = os.environ.get("CRM_GROUND_TRUTH_DIR", "")
    return dg.Definitions(
        assets=[*build_scoring_assets(), *build_scored_marts_assets(project)],
        resources={
            "scoring": ScoringResource(
                warehouse_path=str(settings.warehouse_path),
                models_dir=str(Path(settings.data_dir) / "models"),
                config_path=str(scoring_config_path()),
                ground_truth_dir=ground_truth if ground_truth and Path(ground_truth).exists() else "",
            )
        },
    )
