"""The nightly path computes what a full build computes (issue 14).

A company of 300 persons and 90 days is generated whole, then its sources are copied without the
last day (simulator/new_day.py) and built in full. The warehouse is copied, the day appended, and:

* **nightly**: the first copy builds as the nightly job does (each source reads what is new, dbt
  restages only the touched keys, identity scores only new people);
* **full**: the second copy builds with ``full_refresh``: every source re-read whole, every
  incremental model rebuilt from scratch, every pair of records re-resolved;
* **window**: the third copy re-reads the last four days (``crm build --start``): a batch that
  replaces days, so the incremental models take their fallback and restage every key in place.

Both start from the same warehouse, so they share the trained models, the issued customer ids and
the scores' history: any difference is a difference between the incremental and the full paths.
The staged facts, the marts and the scores are compared row for row: same row counts and the same
checksum of every row ordered by its key. Bookkeeping that names the run (ids, timestamps of the
run) is left out and listed below. Floating-point columns are compared to 9 decimals: a sum of
doubles depends on the order DuckDB's threads add them up (326.69999999999993 or
326.70000000000005), between two full builds as well.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from crm.settings import PROJECT_ROOT, load_settings

START = date(2025, 1, 1)
DAYS = 90
LAST_DAY = START + timedelta(days=DAYS - 1)
# Table -> (key columns it is ordered by, run bookkeeping columns left out of the comparison).
COMPARED = {
    "staging.stg_marketing__events": (("source_system", "_source_key"), ("_ledger_mark",)),
    "staging.stg_sales__orders": (("source_system", "_source_key"), ("_ledger_mark",)),
    "staging.stg_sales__order_lines": (("source_system", "_source_key"), ("_ledger_mark",)),
    "staging.stg_support__tickets": (("source_system", "_source_key"), ("_ledger_mark",)),
    "identity.records": (("record_key",), ("resolved_at", "run_id")),
    "marts.orders": (("source_system", "order_id"), ()),
    "marts.marketing_events": (("source_system", "event_id"), ()),
    "marts.support_tickets": (("source_system", "ticket_id"), ()),
    "marts.order_lines": (("order_line_id",), ()),
    "marts.campaign_performance": (("campaign_id",), ()),
    "marts.customers": (("customer_id",), ("resolved_at",)),
    "marts.customer_rfm": (("customer_id",), ()),
    "marts.customer_360": (("customer_id",), ()),
    "marts.customer_scores": (("customer_id",), ("scored_at", "run_id")),
}


def _build(root: Path, **kwargs):
    from pipelines.build import run_build

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CRM_SOURCES_DIR", str(root / "sources"))
        mp.setenv("CRM_DATA_DIR", str(root / "data"))
        mp.setenv("CRM_GROUND_TRUTH_DIR", str(root / "ground_truth"))
        for name in ("CRM_WAREHOUSE_PATH", "CRM_HISTORY_START", "CRM_SALES_DB_URL", "CRM_CONFIG"):
            mp.delenv(name, raising=False)
        settings = load_settings(PROJECT_ROOT / "config" / "sources.demo.yml")
        with dg.DagsterInstance.ephemeral() as instance:
            outcome = run_build(settings, instance=instance, **kwargs)
    assert outcome.success, outcome.failures + outcome.failed_checks
    return settings


def _fingerprint(con: duckdb.DuckDBPyConnection, table: str, keys: tuple[str, ...], left_out: tuple[str, ...]):
    """(rows, checksum of every row in key order) over the table's columns except ``left_out``."""
    schema, name = table.split(".")
    columns = [
        f'round("{c}", 9)' if kind in ("DOUBLE", "FLOAT") else f'"{c}"'
        for c, kind in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [schema, name],
        ).fetchall()
        if c not in left_out
    ]
    row = ", ".join(columns)
    order = ", ".join(f'"{k}"' for k in keys)
    return con.execute(
        f"SELECT count(*), md5(string_agg(md5(CAST(ROW({row}) AS VARCHAR)), '' ORDER BY {order})) FROM {table}"
    ).fetchone()


@pytest.fixture(scope="module")
def nightly_and_full(tmp_path_factory):
    from simulator import SimulationConfig, generate
    from simulator.new_day import append_days, hold_back

    base = tmp_path_factory.mktemp("incremental_equals_full")
    whole = base / "whole"
    generate(SimulationConfig(customers=300, seed=11, start=START, days=DAYS, out=whole, truth_out=base / "truth"))
    nightly, full, window = base / "nightly", base / "full", base / "window"
    hold_back(whole, nightly / "sources", LAST_DAY)
    shutil.copytree(base / "truth", nightly / "ground_truth")
    _build(nightly)
    for copy in (full, window):
        shutil.copytree(nightly, copy, symlinks=True)
    for root in (nightly, full, window):
        append_days(whole, root / "sources", LAST_DAY)
    results = {}
    for root, kwargs in (
        (nightly, {}),
        (full, {"full_refresh": True}),
        (window, {"start": LAST_DAY - timedelta(days=3)}),
    ):
        settings = _build(root, **kwargs)
        with settings.connect_warehouse(read_only=True) as con:
            results[root.name] = {
                table: _fingerprint(con, table, keys, left_out) for table, (keys, left_out) in COMPARED.items()
            }
            results[root.name]["rows read"] = con.execute(
                "SELECT sum(rows_read) FROM ops.ingest_batches WHERE run_id = (SELECT run_id FROM ops.ingest_batches "
                "ORDER BY finished_at DESC LIMIT 1)"
            ).fetchone()[0]
    return results


def test_the_nightly_build_read_only_the_new_day(nightly_and_full):
    # The full refresh re-read every source; the nightly only the new day (and the SQL watermark's day).
    assert 0 < nightly_and_full["nightly"]["rows read"] < nightly_and_full["full"]["rows read"] / 10


@pytest.mark.parametrize("table", list(COMPARED))
def test_nightly_equals_full(nightly_and_full, table):
    nightly, full = nightly_and_full["nightly"][table], nightly_and_full["full"][table]
    assert nightly[0] > 0, f"{table} is empty"
    assert nightly == full, f"{table}: nightly {nightly} != full {full}"


@pytest.mark.parametrize("table", list(COMPARED))
def test_a_replaced_window_restages_to_the_same_result(nightly_and_full, table):
    window, full = nightly_and_full["window"][table], nightly_and_full["full"][table]
    assert window == full, f"{table}: after re-reading the last days {window} != full {full}"
