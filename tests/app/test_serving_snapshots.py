"""Publishing snapshots and re-exporting saved segments: what the build leaves for the app."""

from __future__ import annotations

import hashlib
import json
import stat
from datetime import UTC, datetime, timedelta

import dagster as dg
import duckdb
import polars as pl
import pytest

from crm.serving.segments import Condition, SegmentDefinition, save_segment
from crm.serving.snapshots import (
    BUILT_IN_SNAPSHOT,
    CheckResult,
    SnapshotError,
    current_snapshot,
    is_served,
    list_snapshots,
    publish_snapshot,
)
from crm.settings import DEFAULT_CONFIG
from pipelines.defs.serving.assets import SEGMENT_EXPORTS, SNAPSHOT, build_serving_defs
from pipelines.resources import CrmSettingsResource


def test_the_build_published_a_read_only_snapshot_with_its_bookkeeping(built_company, build_snapshot):
    assert built_company.outcome.success, built_company.outcome.failures
    assert build_snapshot.run_id == built_company.outcome.run_id
    assert not build_snapshot.path.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    with duckdb.connect(str(build_snapshot.path), read_only=True) as con:
        for table, rows in build_snapshot.row_counts.items():
            assert con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0] == rows, table
        manifest = dict(con.execute("SELECT table_name, row_count FROM ops.snapshot_manifest").fetchall())
        checks = con.execute("SELECT count(*), count(DISTINCT asset_key) FROM ops.asset_check_results").fetchall()[0]
        runs = [r[0] for r in con.execute("SELECT run_id FROM ops.recent_runs").fetchall()]
        with pytest.raises(duckdb.Error):
            con.execute("CREATE TABLE marts.scribble AS SELECT 1")
    assert manifest == build_snapshot.row_counts and manifest["marts.customer_360"] > 1000
    assert checks[0] > 50 and checks[1] > 10, "raw, staging and mart checks are all recorded"
    assert built_company.outcome.run_id in runs


def test_the_snapshot_holds_only_served_tables_and_every_table_the_dashboard_reads(build_snapshot):
    with duckdb.connect(str(build_snapshot.path), read_only=True) as con:
        held = {
            (schema, table)
            for schema, table in con.execute(
                "SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = current_database()"
            ).fetchall()
        }
        columns = {
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = 'serving' AND table_name = 'customer_search'"
            ).fetchall()
        }
        samples = con.execute("SELECT count(*) FROM ops.quarantine_samples").fetchall()[0][0]
    extra = {(s, t) for s, t in held if not is_served(s, t) and t not in BUILT_IN_SNAPSHOT.get(s, ())}
    assert not extra, f"tables in the snapshot that are neither served nor built at publish: {sorted(extra)}"
    assert not {s for s, _ in held} & {"raw", "quarantine", "staging", "intermediate"}
    # What issue 12's pages read (search, freshness, quarantine pointers, drift, steward review).
    for wanted in (
        ("serving", "customer_search"),
        ("ops", "freshness_expectations"),
        ("ops", "quarantine_samples"),
        ("ml", "score_drift"),
        ("identity", "suspected_duplicates"),
        ("identity", "steward_decisions"),
        ("identity", "guarded_values"),
    ):
        assert wanted in held, wanted
    assert {"haystack", "phones", "haystack_no_contacts"} <= columns
    assert samples > 0, "the shared build quarantines rows: Data health points at some"


def _tiny_warehouse(path, customers: int):
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA IF NOT EXISTS marts")
        con.execute(
            f"CREATE OR REPLACE TABLE marts.customer_360 AS SELECT range::VARCHAR AS customer_id "
            f"FROM range({customers})"
        )


def test_publishing_swaps_the_pointer_and_keeps_the_last_three(tmp_path):
    warehouse, data_dir = tmp_path / "crm.duckdb", tmp_path / "data"
    start = datetime(2025, 1, 1, tzinfo=UTC)
    for night in range(5):
        _tiny_warehouse(warehouse, customers=10 + night)
        published = publish_snapshot(warehouse, data_dir, run_id=f"run{night}", built_at=start + timedelta(days=night))
        current = current_snapshot(data_dir)
        assert current == published and current.row_counts == {"marts.customer_360": 10 + night}
    kept = list_snapshots(data_dir)
    assert [s.run_id for s in kept] == ["run4", "run3", "run2"]
    assert sorted(p.name for p in (data_dir / "snapshots").iterdir()) == sorted(
        ["CURRENT.json"] + [f"{s.snapshot_id}.duckdb" for s in kept] + [f"{s.snapshot_id}.json" for s in kept]
    )


def test_a_failed_error_check_never_publishes_and_the_previous_snapshot_stays(tmp_path):
    warehouse, data_dir = tmp_path / "crm.duckdb", tmp_path / "data"
    _tiny_warehouse(warehouse, customers=3)
    good = publish_snapshot(warehouse, data_dir, run_id="good")
    failing = CheckResult("marts/customer_360", "unique_customer_id", False, "ERROR", None, "{}", datetime.now(UTC))
    warning = CheckResult(
        "raw/sales_orders", "great_expectations_warnings", False, "WARN", None, "{}", datetime.now(UTC)
    )
    _tiny_warehouse(warehouse, customers=99)
    with pytest.raises(SnapshotError, match="marts/customer_360 / unique_customer_id"):
        publish_snapshot(warehouse, data_dir, run_id="bad", checks=[failing, warning])
    assert current_snapshot(data_dir) == good
    assert len(list((data_dir / "snapshots").glob("*.duckdb*"))) == 1
    assert publish_snapshot(warehouse, data_dir, run_id="warned", checks=[warning]).row_counts == {
        "marts.customer_360": 99
    }


@pytest.fixture
def serving_env(tmp_path, monkeypatch, published):
    """A writable copy of a published snapshot as 'the warehouse', and a fresh data dir."""
    warehouse = tmp_path / "warehouse" / "crm.duckdb"
    warehouse.parent.mkdir()
    warehouse.write_bytes(published.snapshot.path.read_bytes())
    warehouse.chmod(stat.S_IRUSR | stat.S_IWUSR)
    monkeypatch.setenv("CRM_WAREHOUSE_PATH", str(warehouse))
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CRM_CONFIG", str(DEFAULT_CONFIG))
    return tmp_path / "data"


def _upstream(fail: bool) -> dg.AssetsDefinition:
    @dg.asset(key=["marts", "customer_360_stand_in"])
    def upstream() -> None:
        if fail:
            raise RuntimeError("the build broke here")

    return upstream


def _materialize(upstream, instance) -> dg.ExecuteInProcessResult:
    serving = build_serving_defs(upstream=[upstream.key]).assets
    return dg.materialize(
        [upstream, *serving],
        instance=instance,
        raise_on_error=False,
        resources={"crm": CrmSettingsResource(config_path=str(DEFAULT_CONFIG))},
    )


def test_through_dagster_a_failed_step_upstream_leaves_the_previous_snapshot(serving_env, instance):
    assert _materialize(_upstream(fail=False), instance).success
    first = current_snapshot(serving_env)
    result = _materialize(_upstream(fail=True), instance)
    assert not result.success
    assert SNAPSHOT not in {e.asset_key for e in result.get_asset_materialization_events()}
    assert current_snapshot(serving_env) == first


def test_the_nightly_run_re_exports_every_saved_segment_with_a_manifest(serving_env, instance):
    save_segment(
        serving_env,
        SegmentDefinition(
            name="Gold email", channel="email", conditions=[Condition(column="loyalty_tier", op="in", value=["Gold"])]
        ),
    )
    save_segment(serving_env, SegmentDefinition(name="Everyone"))
    result = _materialize(_upstream(fail=False), instance)
    assert result.success
    snapshot = current_snapshot(serving_env)
    exports = serving_env / "exports"
    manifest = json.loads((exports / "gold_email.manifest.json").read_text())
    assert manifest["snapshot_id"] == snapshot.snapshot_id
    assert manifest["definition"]["conditions"][0]["value"] == ["Gold"]
    for name, facts in manifest["files"].items():
        assert hashlib.sha256((exports / name).read_bytes()).hexdigest() == facts["sha256"]
    rows = pl.read_parquet(exports / "gold_email.parquet")
    with duckdb.connect(str(snapshot.path), read_only=True) as con:
        gold, sendable = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE c.email_consent AND NOT c.is_unsubscribed AND c.email IS NOT NULL) "
            "FROM marts.customer_360 c LEFT JOIN marts.customer_scores s USING (customer_id) "
            "WHERE s.loyalty_tier = 'Gold'"
        ).fetchall()[0]
    assert rows.height == manifest["row_count"] == sendable
    assert manifest["excluded_without_consent"] == gold - sendable
    assert (
        json.loads((exports / "everyone.manifest.json").read_text())["row_count"]
        == snapshot.row_counts["marts.customer_360"]
    )
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert {SNAPSHOT, SEGMENT_EXPORTS} <= materialized
