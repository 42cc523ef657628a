"""The code location's shape: a renamed asset, check or schedule shows up here, not in production."""

from __future__ import annotations

import difflib
import os
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg

from crm.ingest.entities import ENTITIES
from pipelines.definitions import build_definitions


def test_every_source_entity_is_an_unpartitioned_raw_asset_with_its_checks(use_company, small_company):
    """Regression (issue 10): 10,927 daily partitions x 12 raw assets took Dagster over 30 minutes to
    plan; the raw assets read from the ledger's cursor instead, so the history's length costs nothing."""
    defs = build_definitions(use_company(small_company))
    graph = defs.resolve_asset_graph()
    keys = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert {f"raw/{name}" for name in ENTITIES} | {"ops/ingest_reconciliation"} <= keys
    assert all(graph.get(key).partitions_def is None for key in graph.get_all_asset_keys())
    checks = {(c.asset_key.to_user_string(), c.name) for c in graph.asset_check_keys}
    for name in ENTITIES:
        for check in (
            "rows_reconciled",
            "quarantine_share_within_limit",
            "great_expectations_contract",
            "great_expectations_warnings",
            "no_schema_drift",
            "source_read_cleanly",
        ):
            assert (f"raw/{name}", check) in checks


def test_nightly_schedule_runs_the_job_once_a_night_at_two(use_company, small_company):
    defs = build_definitions(use_company(small_company))
    schedule = defs.resolve_schedule_def("nightly_build_schedule")
    assert schedule.cron_schedule == "0 2 * * *"
    assert schedule.job_name == "nightly_build"
    tick = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)
    with (
        dg.instance_for_test() as instance,
        dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()
        ) as ctx,
    ):
        requests = schedule.evaluate_tick(ctx).run_requests
    assert [(r.run_key, r.partition_key) for r in requests] == [("2024-03-05", None)]


def test_schedule_time_comes_from_the_config(use_company, small_company, monkeypatch):
    monkeypatch.setenv("CRM_NIGHTLY_CRON", "30 4 * * *")
    defs = build_definitions(use_company(small_company))
    assert defs.resolve_schedule_def("nightly_build_schedule").cron_schedule == "30 4 * * *"


SNAPSHOT = Path(__file__).with_name("definitions_snapshot.txt")


def _describe(defs: dg.Definitions) -> str:
    """Every asset (group, partitions), check (blocking or not), job and schedule, one per line."""
    graph = defs.resolve_asset_graph()
    lines = []
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        partitions = type(node.partitions_def).__name__ if node.partitions_def else "unpartitioned"
        lines.append(f"asset {key.to_user_string()} group={node.group_name} {partitions}")
    blocking = {spec.key for assets in defs.assets for spec in getattr(assets, "check_specs", []) if spec.blocking}
    for check in sorted(graph.asset_check_keys, key=lambda c: (c.asset_key.to_user_string(), c.name)):
        kind = "blocking" if check in blocking else "warn/report"
        lines.append(f"check {check.asset_key.to_user_string()}:{check.name} {kind}")
    for job in sorted(defs.jobs or [], key=lambda j: j.name):
        lines.append(f"job {job.name}")
    for schedule in sorted(defs.schedules or [], key=lambda s: s.name):
        lines.append(f"schedule {schedule.name} cron='{schedule.cron_schedule}' job={schedule.job_name}")
    return "\n".join(lines) + "\n"


def test_the_demo_definitions_match_the_committed_snapshot(use_company, small_company):
    """A refactor that drops, renames or regroups an asset, a check, a job or the schedule fails here.
    After an intended change: CRM_UPDATE_SNAPSHOT=1 pytest tests/unit/test_definitions.py, and commit
    the file with the change."""
    described = _describe(build_definitions(use_company(small_company)))
    if os.environ.get("CRM_UPDATE_SNAPSHOT"):
        SNAPSHOT.write_text(described, encoding="utf-8")
    expected = SNAPSHOT.read_text(encoding="utf-8")
    diff = "".join(difflib.unified_diff(expected.splitlines(True), described.splitlines(True), "committed", "built"))
    assert described == expected, f"the definitions changed:\n{diff}"
