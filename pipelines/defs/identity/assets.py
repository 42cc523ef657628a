"""Dagster wiring of identity resolution (crm/identity): between dbt's staging views and its warehouse.

["staging", stg_*], ["seeds", "identity_overrides"], ["raw", "marketing_events"]
  -> ["identity", "records"], ["identity", "customer_id_changes"]     this step
  -> dbt_warehouse, which reads them as the dbt sources identity.*
"""

import dagster as dg

from crm.identity.matching import DEFAULT_THRESHOLD, MatchSettings
from crm.identity.resolution import IdentitySettings, run_identity_resolution, steward_override_violations
from crm.identity.steward import load_decisions
from pipelines.resources import CrmSettingsResource, WarehouseResource

IDENTITY_RECORDS = dg.AssetKey(["identity", "records"])
IDENTITY_CHANGES = dg.AssetKey(["identity", "customer_id_changes"])
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
    """Run-time knobs of identity resolution (defaults are the evaluated ones)."""

    match_threshold: float = DEFAULT_THRESHOLD
    probabilistic: bool = True
    phone_region: str = "GB"


@dg.multi_asset(
    name="identity_resolution",
    specs=[
        dg.AssetSpec(
            IDENTITY_RECORDS,
            deps=IDENTITY_INPUTS,
            group_name="warehouse",
            kinds={"python", "duckdb"},
            description="One row per source record with its stable customer_id (deterministic + Splink).",
        ),
        dg.AssetSpec(
            IDENTITY_CHANGES,
            deps=IDENTITY_INPUTS,
            group_name="warehouse",
            kinds={"python", "duckdb"},
            description="Append-only log of customer id merges and splits between runs.",
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
    settings = IdentitySettings(
        phone_region=config.phone_region,
        probabilistic=config.probabilistic,
        match=MatchSettings(threshold=config.match_threshold),
    )
    with warehouse.connect() as con:
        decisions = load_decisions(crm.settings().data_dir)
        summary = run_identity_resolution(con, settings, run_id=context.run_id[:12], steward_decisions=decisions)
        violations = steward_override_violations(con)
    context.log.info(f"identity resolution: {summary}")
    yield dg.MaterializeResult(asset_key=IDENTITY_RECORDS, metadata=summary.as_metadata())
    yield dg.MaterializeResult(
        asset_key=IDENTITY_CHANGES,
        metadata={"merges": summary.merges, "splits": summary.splits, "retired": summary.retired},
    )
    yield dg.AssetCheckResult(
        asset_key=IDENTITY_RECORDS,
        check_name=STEWARD_CHECK,
        passed=not violations,
        metadata={"violations": len(violations), "examples": str(violations[:5])},
    )
