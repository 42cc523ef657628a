"""Dagster wiring of ingestion (crm/ingest): one asset per canonical source entity, landing in ``raw.<entity>``.

The raw assets are **not partitioned**: each run reads what is new since the ledger's cursor (new
or changed files, SQL rows from the watermark's day on, export pages after the stored cursor), so a
30-year history with 18 months of data plans and runs like an 18-month one, and a source with
nothing new costs a ledger lookup. The ``ingest_window`` resource (run config, or
`crm build --start/--end`) re-reads and replaces a window of days instead. docs/sources.md,
"How a build reads", has the decision and its reasons.

Row rules and the blocking checks (books balance, share of bad rows, the Great Expectations
contract) run on the whole batch, read in slices, before its one transaction: a batch they refuse
is never written and the step fails with the reason, so nothing a check refuses reaches raw. The
checks are reported here.
"""

from datetime import date

import dagster as dg

from crm.coverage import write_coverage
from crm.ingest.entities import ENTITIES, Entity
from crm.ingest.readers import IngestError, Window
from crm.ingest.service import IngestRefusedError, IngestReport, ingest_entity, refresh_reconciliation
from pipelines.resources import CrmSettingsResource, WarehouseResource

WAREHOUSE_POOL = "duckdb_warehouse"

CHECK_RECONCILED = "rows_reconciled"
CHECK_QUARANTINE_SHARE = "quarantine_share_within_limit"
CHECK_CONTRACT = "great_expectations_contract"
CHECK_EXPECTATION_WARNINGS = "great_expectations_warnings"
CHECK_SCHEMA_DRIFT = "no_schema_drift"
CHECK_READ_CLEANLY = "source_read_cleanly"


class IngestWindowResource(dg.ConfigurableResource):
    """Which days a run re-reads: empty (the default, and the nightly run) = what is new since the
    last load; ``start``/``end`` (YYYY-MM-DD, either may be empty) = re-read and replace those days."""

    start: str = ""
    end: str = ""

    def window(self) -> Window | None:
        if not self.start and not self.end:
            return None
        return Window(
            date.fromisoformat(self.start) if self.start else None, date.fromisoformat(self.end) if self.end else None
        )


def raw_asset_key(entity_name: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", entity_name])


def _check_specs(key: dg.AssetKey) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec(
            CHECK_RECONCILED,
            asset=key,
            blocking=True,
            description="Rows read = rows loaded into raw + rows quarantined (nothing lost); checked before commit.",
        ),
        dg.AssetCheckSpec(
            CHECK_QUARANTINE_SHARE,
            asset=key,
            blocking=True,
            description="The share of quarantined rows stays under quality.max_quarantine_share; "
            "checked before commit.",
        ),
        dg.AssetCheckSpec(
            CHECK_CONTRACT,
            asset=key,
            blocking=True,
            description="Critical Great Expectations (schema, required values, accepted values, ranges); "
            "checked before commit.",
        ),
        dg.AssetCheckSpec(
            CHECK_EXPECTATION_WARNINGS,
            asset=key,
            description="Warning-level Great Expectations (key uniqueness within a batch).",
        ),
        dg.AssetCheckSpec(
            CHECK_SCHEMA_DRIFT,
            asset=key,
            description="The source's columns still match the mapping (new, vanished or repeated columns).",
        ),
        dg.AssetCheckSpec(
            CHECK_READ_CLEANLY,
            asset=key,
            description="Nothing was passed over: no empty or misnamed file, unreadable page header, rows before "
            "the history start, or absent optional source.",
        ),
    ]


def _check_results(entity: Entity, report: IngestReport) -> list[dg.AssetCheckResult]:
    key = raw_asset_key(entity.name)
    results = []
    outcomes = {c.name: c for c in report.checks}
    for name in (CHECK_RECONCILED, CHECK_QUARANTINE_SHARE, CHECK_CONTRACT, CHECK_EXPECTATION_WARNINGS):
        outcome = outcomes.get(name)
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=name,
                passed=outcome.passed if outcome else True,
                severity=dg.AssetCheckSeverity.ERROR
                if name != CHECK_EXPECTATION_WARNINGS
                else dg.AssetCheckSeverity.WARN,
                description=(outcome.message[:2000] if outcome else "no rows loaded in this run"),
                metadata={"details": dg.MetadataValue.json(outcome.details if outcome else {})},
            )
        )
    for name, warnings in ((CHECK_SCHEMA_DRIFT, report.drift_warnings), (CHECK_READ_CLEANLY, report.warnings)):
        unique = sorted(set(warnings))
        results.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=name,
                passed=not unique,
                severity=dg.AssetCheckSeverity.WARN,
                description="; ".join(unique)[:2000] or None,
                metadata={"warnings": dg.MetadataValue.json(unique[:50])},
            )
        )
    return results


def _build_raw_asset(entity: Entity) -> dg.AssetsDefinition:
    key = raw_asset_key(entity.name)

    @dg.asset(
        key=key,
        description=entity.description,
        group_name="ingest",
        kinds={"duckdb"},
        deps=[raw_asset_key(name) for name in entity.upstream],
        check_specs=_check_specs(key),
        pool=WAREHOUSE_POOL,
        tags={"domain": entity.domain},
    )
    def _raw_entity(
        context: dg.AssetExecutionContext,
        crm: CrmSettingsResource,
        warehouse: WarehouseResource,
        ingest_window: IngestWindowResource,
    ) -> dg.MaterializeResult:
        settings = crm.settings()
        try:
            with warehouse.connect() as con:
                report = ingest_entity(con, settings, entity.name, ingest_window.window(), run_id=context.run_id)
        except IngestRefusedError as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={"checks": dg.MetadataValue.json({c.name: c.message for c in exc.report.checks})},
                allow_retries=False,
            ) from None
        except IngestError as exc:
            raise dg.Failure(description=str(exc), allow_retries=False) from None
        for warning in sorted(set(report.drift_warnings) | set(report.warnings)):
            context.log.warning(warning)
        for note in report.notes:
            context.log.info(f"{entity.name}: {note}")
        return dg.MaterializeResult(
            metadata={
                "source": report.source or "not configured",
                "status": report.status,
                "mode": report.mode,
                "window": str(report.window) if report.window else "none",
                "rows_read": report.rows_read,
                "rows_loaded": report.rows_loaded,
                "rows_quarantined": report.rows_quarantined,
                "rows_suppressed": report.rows_suppressed,
                "rows_replaced": report.rows_replaced,
                "rows_outside_history": report.rows_outside,
                "files_read": report.files_read,
                "dagster/row_count": report.rows_loaded,
            },
            check_results=_check_results(entity, report),
        )

    return _raw_entity


@dg.asset(
    key=dg.AssetKey(["ops", "ingest_reconciliation"]),
    deps=[raw_asset_key(name) for name in ENTITIES],
    group_name="ingest",
    kinds={"duckdb"},
    pool=WAREHOUSE_POOL,
    description="Per entity: rows read = rows in raw + rows in quarantine (what `crm audit` prints); and "
    "ops.source_coverage: what the sources let the pipeline compute, and what each absent one costs.",
)
def ingest_reconciliation(warehouse: WarehouseResource) -> dg.MaterializeResult:
    with warehouse.connect() as con:
        rows = refresh_reconciliation(con)
        coverage = write_coverage(con)
    unreconciled = [row["entity"] for row in rows if not row["reconciled"]]
    return dg.MaterializeResult(
        metadata={
            "entities": len(rows),
            "unreconciled": ", ".join(unreconciled) or "none",
            "rows_in_raw": sum(row["rows_in_raw"] for row in rows),
            "rows_in_quarantine": sum(row["rows_in_quarantine"] for row in rows),
            "absent": ", ".join(coverage.filter(~coverage["available"])["capability"]) or "none",
        }
    )


def build_ingest_assets() -> list[dg.AssetsDefinition]:
    return [_build_raw_asset(entity) for entity in ENTITIES.values()] + [ingest_reconciliation]
