"""Dagster wiring of identity resolution (crm/identity): between dbt's staging views and its warehouse.

["staging", stg_*], ["seeds", "identity_overrides"], ["raw", "marketing_events"]
  -> ["identity", "records"], ["identity", "customer_id_changes"],
     ["identity", "suspected_duplicates"], ["identity", "guarded_values"]     this step
  -> dbt_warehouse, which reads them as the dbt sources identity.*

The model is trained on the company's own records and kept under ``<data_dir>/models/identity``;
a nightly run normalises only new and changed records (the others are kept in the warehouse,
crm/identity/prepared.py) and scores only new descriptions of people. ``crm build --reresolve``
(run config ``reresolve: true``) normalises every record and scores every pair again; both give
the same customers and ids.
"""

from pathlib import Path

import dagster as dg

from crm.identity.isolated import resolve_warehouse_in_child
from crm.identity.resolution import settings_for, steward_override_violations
from crm.identity.steward import load_decisions
from pipelines.resources import CrmSettingsResource, WarehouseResource

IDENTITY_RECORDS = dg.AssetKey(["identity", "records"])
IDENTITY_CHANGES = dg.AssetKey(["identity", "customer_id_changes"])
IDENTITY_SUSPECTED = dg.AssetKey(["identity", "suspected_duplicates"])
IDENTITY_GUARDED = dg.AssetKey(["identity", "guarded_values"])
IDENTITY_OP = "identity_resolution"
IDENTITY_INPUTS = [
    *(
        dg.AssetKey(["staging", name])
        for name in (
            "stg_sales__contacts",
            "stg_sales__orders",
            "stg_marketing__contacts",
            "stg_marketing__events",
            "stg_support__tickets",
        )
    ),
    dg.AssetKey(["seeds", "identity_overrides"]),
    dg.AssetKey(["raw", "marketing_events"]),
]
STEWARD_CHECK = "steward_overrides_honoured"


class IdentityConfig(dg.Config):
    """Run-time knobs of identity resolution; the lasting ones are in the sources config (`identity:`)."""

    reresolve: bool = False  # score every pair again instead of only the new descriptions of people
    retrain: bool = False  # train the model again even if the company has not changed much
    probabilistic: bool = True
    match_threshold: float | None = None  # default: identity.match_threshold of the sources config


def _spec(key: dg.AssetKey, description: str) -> dg.AssetSpec:
    return dg.AssetSpec(
        key, deps=IDENTITY_INPUTS, group_name="warehouse", kinds={"python", "duckdb"}, description=description
    )


@dg.multi_asset(
    name=IDENTITY_OP,
    specs=[
        _spec(
            IDENTITY_RECORDS, "One row per source record with its stable customer_id and why (rules + trained Splink)."
        ),
        _spec(IDENTITY_CHANGES, "Append-only log of customer id merges and splits between runs."),
        _spec(
            IDENTITY_SUSPECTED, "Pairs just under the match threshold in different customers, for a steward's review."
        ),
        _spec(
            IDENTITY_GUARDED, "Values (shared mailboxes, placeholders) and merges refused by the cluster-size guard."
        ),
    ],
    check_specs=[
        dg.AssetCheckSpec(
            STEWARD_CHECK,
            asset=IDENTITY_RECORDS,
            blocking=True,
            description="Every steward merge shares a customer; every split does not (seed, table and dashboard).",
        ),
    ],
)
def identity_resolution(
    context: dg.AssetExecutionContext, config: IdentityConfig, crm: CrmSettingsResource, warehouse: WarehouseResource
):
    sources = crm.settings()
    settings = settings_for(
        sources,
        probabilistic=config.probabilistic,
        threshold=config.match_threshold,
        reresolve=config.reresolve,
        retrain=config.retrain,
    )
    # in a child process: its memory goes back to the system before dbt and the scores run
    summary = resolve_warehouse_in_child(
        Path(warehouse.path),
        settings,
        memory_limit=warehouse.memory_limit,
        threads=warehouse.threads,
        run_id=context.run_id[:12],
        steward_decisions=load_decisions(sources.data_dir),
    )
    with warehouse.connect() as con:
        violations = steward_override_violations(con)
    for note in summary.notes:
        if note.startswith("no "):
            context.log.warning(f"identity resolution: {note}")
        else:
            context.log.info(f"identity resolution: {note}")
    context.log.info(f"identity resolution: {summary}")
    yield dg.MaterializeResult(asset_key=IDENTITY_RECORDS, metadata=summary.as_metadata())
    yield dg.MaterializeResult(
        asset_key=IDENTITY_CHANGES,
        metadata={"merges": summary.merges, "splits": summary.splits, "retired": summary.retired},
    )
    yield dg.MaterializeResult(asset_key=IDENTITY_SUSPECTED, metadata={"pairs": summary.suspected_duplicates})
    yield dg.MaterializeResult(asset_key=IDENTITY_GUARDED, metadata={"refused": summary.guarded_values})
    yield dg.AssetCheckResult(
        asset_key=IDENTITY_RECORDS,
        check_name=STEWARD_CHECK,
        passed=not violations,
        metadata={"violations": len(violations), "examples": str(violations[:5])},
    )
