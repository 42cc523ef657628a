"""Dagster wiring of serving (crm/serving): publish the snapshot last, then re-export the saved segments.

    every other asset of the definitions
      -> ["serving", "snapshot"]          read-only copy of the warehouse + pointer swap
      -> ["serving", "segment_exports"]   each saved segment to <data_dir>/exports with a manifest

The snapshot depends on every other asset key (passed in by pipelines/definitions.py), so it runs after
the whole build and not at all when any step before it failed (Dagster skips a step whose
upstream failed): the previous snapshot then stays current.
"""

import json
from collections.abc import Iterable
from datetime import UTC, datetime

import dagster as dg

from crm.serving.segments import export_saved_segments
from crm.serving.snapshots import CheckResult, RunRecord, publish_snapshot
from pipelines.resources import CrmSettingsResource

SNAPSHOT = dg.AssetKey(["serving", "snapshot"])
SEGMENT_EXPORTS = dg.AssetKey(["serving", "segment_exports"])
RECENT_RUNS = 20


def _metadata_json(metadata) -> str:
    plain = {}
    for key, value in (metadata or {}).items():
        plain[key] = getattr(value, "value", value)
    return json.dumps(plain, default=str)


def run_check_results(instance: dg.DagsterInstance, run_id: str) -> list[CheckResult]:
    """Every asset check evaluated in this run, as the Data health page lists them."""
    results = []
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = entry.dagster_event.asset_check_evaluation_data
        results.append(
            CheckResult(
                asset_key=evaluation.asset_key.to_user_string(),
                check_name=evaluation.check_name,
                passed=bool(evaluation.passed),
                severity=evaluation.severity.value,
                description=evaluation.description,
                metadata_json=_metadata_json(evaluation.metadata),
                evaluated_at=datetime.fromtimestamp(entry.timestamp, UTC),
            )
        )
    return results


def recent_runs(instance: dg.DagsterInstance, limit: int = RECENT_RUNS) -> list[RunRecord]:
    def when(timestamp: float | None) -> datetime | None:
        return datetime.fromtimestamp(timestamp, UTC) if timestamp else None

    return [
        RunRecord(
            run_id=record.dagster_run.run_id,
            job_name=record.dagster_run.job_name,
            status=record.dagster_run.status.value,
            started_at=when(record.start_time),
            ended_at=when(record.end_time),
        )
        for record in instance.get_run_records(limit=limit)
    ]


def build_serving_defs(upstream: Iterable[dg.AssetKey]) -> dg.Definitions:
    """The serving assets; ``upstream`` is every asset key the snapshot must wait for."""
    upstream = sorted(set(upstream) - {SNAPSHOT, SEGMENT_EXPORTS}, key=lambda key: key.to_user_string())

    @dg.asset(
        key=SNAPSHOT,
        deps=upstream,
        group_name="serving",
        kinds={"duckdb"},
        description="Read-only copy of the finished warehouse that the app reads; the pointer moves atomically.",
    )
    def snapshot(context: dg.AssetExecutionContext, crm: CrmSettingsResource) -> dg.MaterializeResult:
        settings = crm.settings()
        published = publish_snapshot(
            settings.warehouse_path,
            settings.data_dir,
            run_id=context.run_id,
            checks=run_check_results(context.instance, context.run_id),
            runs=recent_runs(context.instance),
            freshness=settings.freshness_expectations(),
        )
        context.log.info(f"published snapshot {published.snapshot_id} at {published.path}")
        return dg.MaterializeResult(
            metadata={
                "snapshot_id": published.snapshot_id,
                "path": dg.MetadataValue.path(str(published.path)),
                "row_counts": dg.MetadataValue.json(published.row_counts),
            }
        )

    @dg.asset(
        key=SEGMENT_EXPORTS,
        deps=[SNAPSHOT],
        group_name="serving",
        kinds={"duckdb", "parquet", "csv"},
        description="Each saved segment re-exported from the new snapshot, with a manifest and checksums.",
    )
    def segment_exports(crm: CrmSettingsResource) -> dg.MaterializeResult:
        snapshot_id, manifests, failures = export_saved_segments(crm.settings().data_dir)
        if failures:
            raise dg.Failure(f"{len(failures)} saved segment(s) could not be exported: " + "; ".join(failures))
        return dg.MaterializeResult(
            metadata={
                "snapshot_id": snapshot_id,
                "segments": len(manifests),
                "rows": dg.MetadataValue.json({m["segment"]: m["row_count"] for m in manifests}),
            }
        )

    return dg.Definitions(assets=[snapshot, segment_exports])
