"""Dagster wiring of ingestion (crm/ingest): one asset per canonical source entity, landing in ``raw.<entity>``.

Each asset is daily-partitioned over the data's dates with a single-run backfill policy: the first
load of years of history is one run reading one window, not one run per day. Re-running a day
replaces that day (delete + insert in one transaction), so nothing is counted twice.

Every batch reports asset checks; the blocking ones stop everything downstream when the books do
not balance, when too many rows are bad, or when the Great Expectations contract fails.
"""

from datetime import date

import dagster as dg
import pandas as pd

from crm.ingest.entities import ENTITIES, Entity
from crm.ingest.expectations import validate_frame
from crm.ingest.history import history_start
from crm.ingest.readers import Window
from crm.ingest.service import IngestReport, ingest_entity, refresh_reconciliation
from crm.settings import QualitySettings, Settings
from pipelines.resources import CrmSettingsResource, WarehouseResource

WAREHOUSE_POOL = "duckdb_warehouse"

CHECK_RECONCILED = "rows_reconciled"
CHECK_QUARANTINE_SHARE = "quarantine_share_within_limit"
CHECK_CONTRACT = "great_expectations_contract"
CHECK_EXPECTATION_WARNINGS = "great_expectations_warnings"
CHECK_SCHEMA_DRIFT = "no_schema_drift"


def raw_asset_key(entity_name: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", entity_name])


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    # end_offset=0: the newest partition is yesterday, the last complete day.
    return dg.DailyPartitionsDefinition(
        start_date=history_start(settings).isoformat(), timezone=settings.schedule.timezone, end_offset=0
    )


def _window(context: dg.AssetExecutionContext) -> Window:
    keys = context.partition_key_range
    return Window(date.fromisoformat(keys.start), date.fromisoformat(keys.end))


def _first_partition(context: dg.AssetExecutionContext) -> date:
    return date.fromisoformat(context.assets_def.partitions_def.get_first_partition_key())


def _check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            CHECK_RECONCILED,
            asset=key,
            blocking=True,
            description="Rows read = rows loaded into raw + rows quarantined (nothing lost).",
        ),
        dg.AssetCheckSpec(
            CHECK_QUARANTINE_SHARE,
            asset=key,
            blocking=True,
            description="The share of quarantined rows stays under quality.max_quarantine_share.",
        ),
        dg.AssetCheckSpec(
            CHECK_CONTRACT,
            asset=key,
            blocking=True,
            description="Critical Great Expectations: schema, required values, accepted values, ranges.",
        ),
        dg.AssetCheckSpec(
            CHECK_EXPECTATION_WARNINGS,
            asset=key,
            description="Warning-level Great Expectations (key uniqueness within a batch).",
        ),
        dg.AssetCheckSpec(
            CHECK_SCHEMA_DRIFT,
            asset=key,
            description="The source's columns still match the mapping (new or vanished columns).",
        ),
    ]


def _check_results(
    entity: Entity, report: IngestReport, frame: pd.DataFrame, quality: QualitySettings
) -> list[dg.AssetCheckResult]:
    key = raw_asset_key(entity.name)
    outcomes = validate_frame(entity, frame) if len(frame) else []
    critical = [o for o in outcomes if o.severity == "critical"]
    warnings = [o for o in outcomes if o.severity != "critical"]

    def described(items):
        return {
            f"{o.expectation}({o.column or ''})": {
                "success": o.success,
                "unexpected": o.unexpected_count,
                "examples": o.examples,
            }
            for o in items
        }

    return [
        dg.AssetCheckResult(
            asset_key=key,
            check_name=CHECK_RECONCILED,
            passed=report.reconciled,
            metadata={
                "rows_read": report.rows_read,
                "rows_parsed": report.rows_parsed,
                "rows_loaded": report.rows_loaded,
                "rows_quarantined": report.rows_quarantined,
                "rows_suppressed": report.rows_suppressed,
            },
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name=CHECK_QUARANTINE_SHARE,
            passed=report.quarantine_share <= quality.max_quarantine_share
            or report.rows_read < quality.min_rows_for_share,
            metadata={
                "quarantine_share": round(report.quarantine_share, 5),
                "limit": quality.max_quarantine_share,
                "min_rows_for_share": quality.min_rows_for_share,
                "reasons": dg.MetadataValue.json(report.quarantine_reasons),
            },
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name=CHECK_CONTRACT,
            passed=all(o.success for o in critical),
            metadata={"expectations": dg.MetadataValue.json(described(critical)), "rows_validated": len(frame)},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name=CHECK_EXPECTATION_WARNINGS,
            passed=all(o.success for o in warnings),
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"expectations": dg.MetadataValue.json(described(warnings))},
        ),
        dg.AssetCheckResult(
            asset_key=key,
            check_name=CHECK_SCHEMA_DRIFT,
            passed=not report.drift_warnings,
            severity=dg.AssetCheckSeverity.WARN,
            description="; ".join(sorted(set(report.drift_warnings)))[:2000] or None,
            metadata={"warnings": dg.MetadataValue.json(sorted(set(report.drift_warnings))[:50])},
        ),
    ]


def _build_raw_asset(entity: Entity, partitions: dg.DailyPartitionsDefinition) -> dg.AssetsDefinition:
    key = raw_asset_key(entity.name)

    @dg.asset(
        key=key,
        description=entity.description,
        group_name="ingest",
        kinds={"duckdb"},
        partitions_def=partitions,
        backfill_policy=dg.BackfillPolicy.single_run(),
        deps=[raw_asset_key(name) for name in entity.upstream],
        check_specs=_check_specs(key),
        pool=WAREHOUSE_POOL,
        tags={"domain": entity.domain},
    )
    def _raw_entity(
        context: dg.AssetExecutionContext, crm: CrmSettingsResource, warehouse: WarehouseResource
    ) -> dg.MaterializeResult:
        settings = crm.settings()
        window = _window(context)
        with warehouse.connect() as con:
            report = ingest_entity(
                con, settings, entity.name, window, first_partition=_first_partition(context), run_id=context.run_id
            )
            frame = con.execute(
                f"SELECT * EXCLUDE (_batch_id, _source, _ingested_at) FROM raw.{entity.name} WHERE _batch_id = $b",
                {"b": report.batch_id},
            ).df()
        for warning in sorted(set(report.drift_warnings)):
            context.log.warning(warning)
        if report.source is None:
            context.log.info(f"{entity.name}: no source configured; the table exists and stays empty")
        return dg.MaterializeResult(
            metadata={
                "source": report.source or "not configured",
                "window": f"{window.start}..{window.end}",
                "rows_read": report.rows_read,
                "rows_loaded": report.rows_loaded,
                "rows_quarantined": report.rows_quarantined,
                "rows_suppressed": report.rows_suppressed,
                "files_read": report.files_read,
                "dagster/row_count": report.rows_loaded,
            },
            check_results=_check_results(entity, report, frame, settings.quality),
        )

    return _raw_entity


@dg.asset(
    key=dg.AssetKey(["ops", "ingest_reconciliation"]),
    deps=[raw_asset_key(name) for name in ENTITIES],
    group_name="ingest",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    description="Per entity: rows read = rows in raw + rows in quarantine (what `crm audit` prints).",
)
def ingest_reconciliation(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        rows = refresh_reconciliation(con)
    unreconciled = [row["entity"] for row in rows if not row["reconciled"]]
    return dg.MaterializeResult(
        metadata={
            "entities": len(rows),
            "unreconciled": ", ".join(unreconciled) or "none",
            "rows_in_raw": sum(row["rows_in_raw"] for row in rows),
            "rows_in_quarantine": sum(row["rows_in_quarantine"] for row in rows),
        }
    )


def build_ingest_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    partitions = daily_partitions(settings)
    return [_build_raw_asset(entity, partitions) for entity in ENTITIES.values()] + [ingest_reconciliation]
