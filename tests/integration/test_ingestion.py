"""Ingestion end to end through Dagster, in-process, on the small simulated company and a real DuckDB file."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest
import yaml

from crm.ingest.entities import ENTITIES
from crm.settings import DEFAULT_CONFIG
from pipelines.build import run_build
from tests.conftest import SMALL_COMPANY

# The warehouse after ingestion has tests of its own; these runs stop at the raw tables.
INGEST = ["ingest"]
LAST_DAY = SMALL_COMPANY["start"] + timedelta(days=SMALL_COMPANY["days"] - 1)
SQL_TABLES = {
    "sales_reps": "sales_reps",
    "sales_accounts": "accounts",
    "sales_contacts": "contacts",
    "sales_products": "products",
    "sales_opportunities": "opportunities",
    "sales_opportunity_stages": "opportunity_stage_history",
    "sales_orders": "orders",
    "sales_order_lines": "order_lines",
}
FILE_PATTERNS = {"marketing_campaigns": "campaigns", "marketing_contacts": "contacts", "marketing_events": "events"}


def rows_in_sources(sources: Path) -> dict[str, int]:
    """Count every record the sources hold, independently of the pipeline's readers."""
    counts = {}
    with sqlite3.connect(sources / "sales" / "sales.sqlite") as con:
        for entity, table in SQL_TABLES.items():
            counts[entity] = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    for entity, folder in FILE_PATTERNS.items():
        counts[entity] = sum(
            sum(1 for line in path.read_bytes().splitlines()[1:] if line.strip())
            for path in (sources / "marketing" / folder).glob("*.csv")
        )
    counts["support_tickets"] = sum(
        sum(1 for line in path.read_bytes().splitlines()[1:] if line.strip())
        for path in (sources / "support" / "export").glob("page_*.jsonl")
    )
    return counts


def table_counts(warehouse: Path) -> dict[str, tuple[int, int]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return {
            name: (
                con.execute(f"SELECT count(*) FROM raw.{name}").fetchone()[0],
                con.execute(f"SELECT count(*) FROM quarantine.{name}").fetchone()[0],
            )
            for name in ENTITIES
        }


def partition_counts(warehouse: Path) -> pl.DataFrame:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        return con.sql(
            "SELECT entity, partition_date, rows_read, rows_loaded, rows_quarantined "
            "FROM ops.ingest_partition_counts ORDER BY ALL"
        ).pl()


@pytest.fixture(scope="module")
def built(small_company, tmp_path_factory):
    """One full build of the small company, shared by the read-only tests below."""
    import dagster as dg

    mp = pytest.MonkeyPatch()
    warehouse = tmp_path_factory.mktemp("warehouse") / "crm.duckdb"
    mp.setenv("CRM_CONFIG", str(DEFAULT_CONFIG))
    mp.setenv("CRM_SOURCES_DIR", str(small_company / "sources"))
    mp.setenv("CRM_WAREHOUSE_PATH", str(warehouse))
    mp.setenv("CRM_HISTORY_START", SMALL_COMPANY["start"].isoformat())
    from crm.settings import load_settings

    settings = load_settings()
    with dg.DagsterInstance.ephemeral() as instance:
        outcome = run_build(settings, end=LAST_DAY, instance=instance, groups=INGEST)
    yield settings, outcome, warehouse
    mp.undo()


def test_full_build_loads_every_source_row_and_loses_none(built, small_company):
    settings, outcome, warehouse = built
    assert outcome.success, outcome.failures + outcome.failed_checks
    expected = rows_in_sources(small_company / "sources")
    counted = table_counts(warehouse)
    for entity, rows in expected.items():
        in_raw, in_quarantine = counted[entity]
        assert rows > 0, entity
        assert in_raw + in_quarantine == rows, f"{entity}: {in_raw} + {in_quarantine} != {rows} rows in the source"
    with duckdb.connect(str(warehouse), read_only=True) as con:
        reconciliation = con.sql("SELECT * FROM ops.ingest_reconciliation").pl()
    assert reconciliation["reconciled"].all()
    assert dict(zip(reconciliation["entity"], reconciliation["rows_read"], strict=True)) == {
        entity: expected.get(entity, 0) for entity in ENTITIES
    }


def test_lineage_columns_say_where_each_row_came_from(built):
    _, _, warehouse = built
    with duckdb.connect(str(warehouse), read_only=True) as con:
        event = con.execute(
            "SELECT _source, _source_location, _partition_date, _batch_id FROM raw.marketing_events LIMIT 1"
        ).fetchone()
        order = con.execute("SELECT _source, _source_location FROM raw.sales_orders LIMIT 1").fetchone()
    assert event[0].startswith("marketing_platform:events/events_")
    file_day = event[0].rsplit("_", 1)[1].removesuffix(".csv")
    assert event[1].startswith(f"events/events_{file_day}.csv:")
    assert event[2] == date.fromisoformat(file_day)
    assert event[3].startswith("marketing_events:")
    assert order[0] == "sales_db.orders" and order[1].startswith("orders:id=")


def _truth_location(row: dict) -> str:
    return row["location"]


def test_every_malformed_row_is_quarantined_with_a_reason(built, small_company):
    _, _, warehouse = built
    truth = pl.read_parquet(small_company / "ground_truth" / "malformed.parquet")
    assert truth["kind"].n_unique() >= 5
    with duckdb.connect(str(warehouse), read_only=True) as con:
        quarantined = pl.concat(
            [
                con.sql(f"SELECT '{name}' AS entity, _source, _source_location, _reason FROM quarantine.{name}").pl()
                for name in ENTITIES
            ]
        )
    assert quarantined["_reason"].null_count() == 0
    # Express our locations in the truth's terms: paths relative to the company folder, table:id.
    prefixes = {"marketing": "marketing/", "support": "support/export/"}
    found = set()
    for entity, location in zip(quarantined["entity"], quarantined["_source_location"], strict=True):
        domain = ENTITIES[entity].domain
        found.add((entity, location.replace(":id=", ":") if domain == "sales" else prefixes[domain] + location))
    expected = {(e, loc) for e, loc in zip(truth["entity"], truth["location"], strict=True)}
    missing = expected - found
    assert not missing, f"{len(missing)} malformed rows not quarantined, e.g. {sorted(missing)[:5]}"
    unexpected = found - expected
    assert not unexpected, (
        f"{len(unexpected)} rows quarantined that the truth calls clean, e.g. {sorted(unexpected)[:5]}"
    )
    by_kind = truth.group_by("kind").len()
    assert by_kind.height >= 5


def test_blocking_checks_pass_and_drift_is_reported_as_a_warning(built):
    _, outcome, _ = built
    assert not outcome.failed_checks
    # The demo maps the support rename and ignores the new `device` column: no drift warning.
    assert not [c for c in outcome.warned_checks if c.endswith("no_schema_drift")]


def test_rematerializing_a_partition_replaces_it(built, instance, small_company):
    settings, _, warehouse = built
    before = partition_counts(warehouse)
    totals = table_counts(warehouse)
    day = SMALL_COMPANY["start"] + timedelta(days=40)
    outcome = run_build(settings, start=day, end=day, instance=instance, groups=INGEST)
    assert outcome.success and outcome.window == (day.isoformat(), day.isoformat())
    assert table_counts(warehouse) == totals
    assert partition_counts(warehouse).equals(before)


def test_a_new_day_adds_only_that_days_rows(company_copy, use_company, instance):
    settings = use_company(company_copy)
    assert run_build(settings, end=LAST_DAY - timedelta(days=1), instance=instance, groups=INGEST).success
    before = partition_counts(settings.warehouse_path)
    totals_before = table_counts(settings.warehouse_path)
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        cursor_before = con.execute(
            "SELECT cursor, cursor_date FROM ops.source_state WHERE entity = 'support_tickets'"
        ).fetchone()
    assert run_build(settings, start=LAST_DAY, end=LAST_DAY, instance=instance, groups=INGEST).success
    after = partition_counts(settings.warehouse_path)
    assert after.filter(pl.col("partition_date") < LAST_DAY).equals(before)
    added = after.filter(pl.col("partition_date") == LAST_DAY)
    assert added["rows_read"].sum() > 0
    totals_after = table_counts(settings.warehouse_path)
    expected = rows_in_sources(company_copy / "sources")
    for entity, (in_raw, in_quarantine) in totals_after.items():
        grew = in_raw + in_quarantine - sum(totals_before[entity])
        day_rows = added.filter(pl.col("entity") == entity)["rows_read"].sum()
        assert grew == day_rows, entity
        assert in_raw + in_quarantine == expected.get(entity, 0), entity
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        cursor_after = con.execute(
            "SELECT cursor, cursor_date FROM ops.source_state WHERE entity = 'support_tickets'"
        ).fetchone()
    assert cursor_before[1] < cursor_after[1] == LAST_DAY


def _demo_config_without_support_rename(tmp_path: Path) -> Path:
    config = yaml.safe_load(DEFAULT_CONFIG.read_text())
    del config["sources"]["support_desk"]["entities"]["support_tickets"]["renames"]
    path = tmp_path / "no_rename.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_unmapped_rename_is_a_drift_warning_naming_source_page_and_column(
    small_company, use_company, instance, tmp_path
):
    settings = use_company(small_company, config=_demo_config_without_support_rename(tmp_path))
    outcome = run_build(settings, end=LAST_DAY, instance=instance, groups=INGEST)
    assert outcome.success
    assert "raw/support_tickets / no_schema_drift" in outcome.warned_checks
    with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
        warnings = [
            w
            for row in con.execute(
                "SELECT drift_warnings FROM ops.ingest_batches WHERE entity = 'support_tickets'"
            ).fetchall()
            for w in row[0]
        ]
    assert any("source 'support_desk', page 'page_" in w and "new column 'urgency'" in w for w in warnings), warnings[
        :3
    ]
    assert any("column 'priority' (canonical 'support_tickets.priority') is missing" in w for w in warnings)


def test_missing_required_column_fails_clearly_and_keeps_the_last_good_tables(company_copy, use_company, instance):
    settings = use_company(company_copy)
    assert run_build(settings, end=LAST_DAY, instance=instance, groups=INGEST).success
    good = table_counts(settings.warehouse_path)
    events = sorted((company_copy / "sources" / "marketing" / "events").glob("*.csv"))
    broken = events[len(events) // 2]
    lines = broken.read_bytes().split(b"\n")
    lines[0] = lines[0].replace(b"event_type", b"type")
    broken.write_bytes(b"\n".join(lines))
    outcome = run_build(settings, end=LAST_DAY, instance=instance, groups=INGEST)
    assert not outcome.success
    message = " ".join(outcome.failures)
    assert "source 'marketing_platform'" in message
    assert f"file 'events/{broken.name}'" in message
    assert "required column 'event_type'" in message
    assert table_counts(settings.warehouse_path)["marketing_events"] == good["marketing_events"]


def test_orders_only_company_builds_with_empty_tables_for_the_rest(tmp_path, monkeypatch, instance):
    shop = tmp_path / "shop"
    shop.mkdir()
    good_rows = "".join(f"K-{i % 7};2024-02-{1 + i % 28:02d};{10 + i}.50\n" for i in range(39))
    (shop / "all_orders.csv").write_text(
        "Kunde;Datum;Betrag\nK-1;2024-02-01;19.90\n" + good_rows + "K-3;not a date;7\n", encoding="utf-8"
    )
    config = tmp_path / "orders_only.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "warehouse_path": str(tmp_path / "wh.duckdb"),
                "history_start": "2024-01-01",
                "sources": {
                    "shop": {
                        "kind": "file_drop",
                        "path": str(shop),
                        "delimiter": ";",
                        "entities": {
                            "sales_orders": {
                                "pattern": "all_orders.csv",
                                "single_file": True,
                                "date_column": "order_date",
                                "columns": {"customer_ref": "Kunde", "order_date": "Datum", "total_amount": "Betrag"},
                            }
                        },
                    }
                },
            }
        )
    )
    monkeypatch.setenv("CRM_CONFIG", str(config))
    from crm.settings import load_settings

    settings = load_settings()
    outcome = run_build(settings, instance=instance, groups=INGEST)
    assert outcome.success, outcome.failures
    counts = table_counts(tmp_path / "wh.duckdb")
    assert counts["sales_orders"] == (40, 1)
    assert all(counts[e] == (0, 0) for e in ENTITIES if e != "sales_orders")
    with duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True) as con:
        first = con.execute(
            "SELECT order_id, customer_ref, total_amount FROM raw.sales_orders WHERE _source_location = 'all_orders.csv:2'"
        ).fetchone()
        reason = con.execute("SELECT _source_location, _reason FROM quarantine.sales_orders").fetchone()
    assert first == ("all_orders.csv:2", "K-1", 19.9)
    assert reason[0] == "all_orders.csv:42"
    assert reason[1].startswith("order_date: not a valid timestamp 'not a date' (expected ISO-8601")


def test_audit_command_prints_the_reconciliation(built, monkeypatch):
    from typer.testing import CliRunner

    from pipelines.cli import app

    settings, _, warehouse = built
    result = CliRunner().invoke(app, ["audit", "--json"], env={"CRM_WAREHOUSE_PATH": str(warehouse)})
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert {row["entity"] for row in report["entities"]} == set(ENTITIES)
    assert all(row["reconciled"] for row in report["entities"])
    assert report["quarantine_reasons"] and report["files_not_loaded"] == []
