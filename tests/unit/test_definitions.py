"""The code location's shape: a renamed asset, check or schedule shows up here, not in production."""

from __future__ import annotations

from datetime import datetime, timezone

import dagster as dg

from pipelines.definitions import build_definitions
from pipelines.defs.ingest.entities import ENTITIES


def test_every_source_entity_is_a_daily_partitioned_raw_asset_with_its_checks(use_company, small_company):
    defs = build_definitions(use_company(small_company))
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {f"raw/{name}" for name in ENTITIES} | {"ops/ingest_reconciliation"} <= keys
    for name in ENTITIES:
        node = graph.get(dg.AssetKey(["raw", name]))
        assert isinstance(node.partitions_def, dg.DailyPartitionsDefinition)
        assert node.partitions_def.start.date().isoformat() == "2024-01-01"
        assert node.backfill_policy == dg.BackfillPolicy.single_run()
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    for name in ENTITIES:
        for check in ("rows_reconciled", "quarantine_share_within_limit", "great_expectations_contract",
                      "great_expectations_warnings", "no_schema_drift"):
            assert (f"raw/{name}", check) in checks


def test_nightly_schedule_runs_the_newest_partition_at_two(use_company, small_company):
    defs = build_definitions(use_company(small_company))
    schedule = defs.resolve_schedule_def("nightly_build_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.job_name == "nightly_build"
    tick = datetime(2024, 3, 5, 2, 0, tzinfo=timezone.utc)
    with dg.build_schedule_context(scheduled_execution_time=tick, repository_def=defs.get_repository_def()) as ctx:
        requests = schedule.evaluate_tick(ctx).run_requests
    assert [r.partition_key for r in requests] == ["2024-03-04"]


def test_schedule_time_comes_from_the_config(use_company, small_company, monkeypatch):
    monkeypatch.setenv("CRM_NIGHTLY_CRON", "30 4 * * *")
    defs = build_definitions(use_company(small_company))
    assert defs.resolve_schedule_def("nightly_build_schedule").cron_schedule == "30 4 * * *"
