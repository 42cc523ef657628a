"""Dagster wiring of the scores (crm/scoring): training (weekly by default, gated), nightly scoring.

    ["marts", orders | marketing_events | support_tickets | customers]     dbt_warehouse
      -> ["ml", "churn_model"]        retrain when due, backtest, blocking gate
      -> ["ml", "customer_scores"], ["ml", "rep_actions"], ["ml", "tier_benefits_cost"]
                                      every night, drift check (warns)
      -> dbt_scored_marts, which reads ml.* as dbt sources (pipelines/defs/warehouse)

When the gate rejects a candidate model, the blocking check stops the run before scoring: last
night's scores and customer_360 stay as they were, and the registry records the rejection. The
training asset reuses the current model until its cut-off is ``retrain.cadence_days`` of data old
(config/scoring.yml, default 7), so the nightly job retrains weekly without a second schedule.
"""

from pathlib import Path

import dagster as dg

from crm.scoring.service import (
    NoPublishedModelError,
    NotEnoughHistoryError,
    ensure_ml_schema,
    score_and_publish,
    train_and_register,
    worst_drift,
)
from crm.settings import load_scoring_config
from models_ml.clv import ModelFitError
from pipelines.resources import ScoringResource, WarehouseResource

CHURN_MODEL = dg.AssetKey(["ml", "churn_model"])
CUSTOMER_SCORES = dg.AssetKey(["ml", "customer_scores"])
REP_ACTIONS = dg.AssetKey(["ml", "rep_actions"])
TIER_COSTS = dg.AssetKey(["ml", "tier_benefits_cost"])
FACTS = [dg.AssetKey(["marts", name]) for name in ("orders", "marketing_events", "support_tickets", "customers")]
GATE_CHECK = "no_worse_than_current_model"
DRIFT_CHECK = "population_drift"


class TrainingConfig(dg.Config):
    """Run-time knobs: force a retrain regardless of the cadence."""

    force_retrain: bool = False


@dg.asset(
    key=CHURN_MODEL,
    deps=FACTS,
    group_name="scoring",
    kinds={"python", "scikitlearn"},
    description="The published churn model (ml.model_registry, ml.churn_calibration, ml.churn_drivers, "
    "skops file + model card under data/models/).",
    check_specs=[
        dg.AssetCheckSpec(
            GATE_CHECK,
            asset=CHURN_MODEL,
            blocking=True,
            description="A retrained model must not be worse than the current one on the backtest (ROC-AUC, Brier).",
        )
    ],
)
def churn_model(
    context: dg.AssetExecutionContext, config: TrainingConfig, warehouse: WarehouseResource, scoring: ScoringResource
):
    settings = load_scoring_config(scoring.config_path)
    try:
        with warehouse.connect() as con:
            outcome = train_and_register(
                con, settings, Path(scoring.models_dir), force=config.force_retrain, ground_truth=scoring.ground_truth()
            )
    except NotEnoughHistoryError as exc:
        # A young company: nothing to publish yet, which is not a failed night.
        context.log.warning(f"churn model not trained: {exc}")
        yield dg.MaterializeResult(asset_key=CHURN_MODEL, metadata={"status": "not trained", "reason": str(exc)})
        yield dg.AssetCheckResult(
            asset_key=CHURN_MODEL, check_name=GATE_CHECK, passed=True, metadata={"gate": "no candidate: " + str(exc)}
        )
        return
    context.log.info(
        f"churn model {outcome.model_version}: {outcome.status} ({outcome.reason}); {outcome.gate.message}"
    )
    model = outcome.metrics.get("model", {})
    backtest = {
        f"backtest_{k}": float(model[k]) for k in ("roc_auc", "pr_auc", "brier", "top_decile_lift") if k in model
    }
    yield dg.MaterializeResult(
        asset_key=CHURN_MODEL,
        metadata={
            "model_version": outcome.model_version,
            "status": outcome.status,
            "reason": outcome.reason,
            **backtest,
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
        dg.AssetSpec(
            CUSTOMER_SCORES,
            deps=[CHURN_MODEL, *FACTS],
            group_name="scoring",
            kinds={"python", "duckdb"},
            description="Churn, value, loyalty tier, benefits and next action per customer who has ordered.",
        ),
        dg.AssetSpec(
            REP_ACTIONS,
            deps=[CHURN_MODEL, *FACTS],
            group_name="scoring",
            kinds={"python", "duckdb"},
            description="Each rep's customers ranked by value at stake, with the action and why.",
        ),
        dg.AssetSpec(
            TIER_COSTS,
            deps=[CHURN_MODEL, *FACTS],
            group_name="scoring",
            kinds={"python", "duckdb"},
            description="Customers and projected yearly cost of the benefits per loyalty tier.",
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            DRIFT_CHECK,
            asset=CUSTOMER_SCORES,
            blocking=False,
            description="Population stability index of key features and the score vs the training population (warns).",
        )
    ],
)
def customer_scoring(context: dg.AssetExecutionContext, warehouse: WarehouseResource, scoring: ScoringResource):
    settings = load_scoring_config(scoring.config_path)
    try:
        with warehouse.connect() as con:
            outcome = score_and_publish(con, settings, Path(scoring.models_dir))
    except (NoPublishedModelError, ModelFitError) as exc:
        # Nothing to score yet (no orders), or too few customers for any value model: not a failed night.
        context.log.warning(f"customers not scored: {exc}")
        with warehouse.connect() as con:
            ensure_ml_schema(con)  # empty score tables: the marts build with null scores
        for key in (CUSTOMER_SCORES, REP_ACTIONS, TIER_COSTS):
            yield dg.MaterializeResult(asset_key=key, metadata={"status": "not scored", "reason": str(exc)})
        yield dg.AssetCheckResult(
            asset_key=CUSTOMER_SCORES,
            check_name=DRIFT_CHECK,
            passed=True,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"reason": str(exc)},
        )
        return
    worst, value = worst_drift(outcome.drift)
    for component, note in outcome.notes:
        context.log.info(f"scores, {component}: {note}")
    meta = {
        "model_version": outcome.model_version,
        "scored_as_of": str(outcome.scored_as_of),
        "notes": dg.MetadataValue.json([f"{c}: {n}" for c, n in outcome.notes]),
    }
    bands = {f"band_{k}": v for k, v in outcome.bands.items()}
    tiers = {f"tier_{k}": v for k, v in outcome.tiers.items()}
    yield dg.MaterializeResult(
        asset_key=CUSTOMER_SCORES, metadata={**meta, "customers": outcome.customers, **bands, **tiers}
    )
    yield dg.MaterializeResult(asset_key=REP_ACTIONS, metadata={**meta, "rows": outcome.rep_actions})
    yield dg.MaterializeResult(asset_key=TIER_COSTS, metadata=meta)
    yield dg.AssetCheckResult(
        asset_key=CUSTOMER_SCORES,
        check_name=DRIFT_CHECK,
        passed=value <= settings.drift.psi_warn,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "worst_feature": worst,
            "worst_psi": float(value),
            **{f"psi_{k}": float(v) for k, v in outcome.drift.items()},
        },
    )


SCORING_ASSETS = [churn_model, customer_scoring]
