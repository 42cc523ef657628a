"""One test per attack of issue 10 on a hand-made source: the intended outcome, and rows read = raw + quarantine.

Each source is tiny and its right answer known. The service runs for real (readers, row rules,
blocking checks, ledger) on a real DuckDB file; the books are read back from the ledger's view
``ops.ingest_reconciliation``, which is what `crm audit` and the Data health page show.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
import yaml

from crm.ingest.readers import CursorChainError, SourceUnavailableError, Window
from crm.ingest.service import ingest_entity, refresh_reconciliation
from crm.settings import load_settings

EVENTS = {"event_id": "id", "email": "email", "event_type": "type", "occurred_at": "ts", "conversion_value": "revenue"}
TICKETS = {
    "ticket_id": "id",
    "status": "status",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "requester_email": "requester.email",
}
ORDERS = {
    "order_id": "id",
    "customer_ref": "contact_id",
    "order_date": "ordered_at",
    "total_amount": "total_amount",
    "created_at": "created_at",
    "updated_at": "updated_at",
}


def _settings(tmp_path: Path, sources: dict, **extra):
    path = tmp_path / "sources.yml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "sources": sources, **extra}))
    return load_settings(path)


def _books(con: duckdb.DuckDBPyConnection, entity: str) -> tuple[int, int, int]:
    """(rows read by the ledger, rows in raw, rows in quarantine), and they must balance."""
    row = next(r for r in refresh_reconciliation(con) if r["entity"] == entity)
    assert row["reconciled"], row
    return row["rows_read"], row["rows_in_raw"], row["rows_in_quarantine"]


def _reasons(con: duckdb.DuckDBPyConnection, entity: str) -> dict[str, str]:
    return dict(con.execute(f"SELECT _source_location, _reason FROM quarantine.{entity}").fetchall())


def _events_source(drop: Path, **extra) -> dict:
    return {
        "mk": {
            "kind": "file_drop",
            "path": str(drop),
            "entities": {"marketing_events": {"pattern": "events_{date}.csv", "columns": EVENTS, **extra}},
        }
    }


def _write_events(drop: Path, day: str, lines: list[str], header: str = "id,email,type,ts,revenue") -> Path:
    drop.mkdir(exist_ok=True)
    path = drop / f"events_{day}.csv"
    path.write_text("\n".join([header, *lines]) + "\n")
    return path


def test_a_missing_drop_folder_fails_the_step_naming_the_fix_unless_the_source_is_optional(tmp_path):
    """Attack: the marketing source's folder is missing; the build used to succeed with empty tables."""
    settings = _settings(tmp_path, _events_source(tmp_path / "nowhere"))
    with settings.connect_warehouse() as con:
        with pytest.raises(SourceUnavailableError) as error:
            ingest_entity(con, settings, "marketing_events")
        assert f"folder {tmp_path / 'nowhere'} does not exist" in str(error.value)
        assert "optional: true" in str(error.value) and "`path:`" in str(error.value)
        optional = _settings(tmp_path, {"mk": {**_events_source(tmp_path / "nowhere")["mk"], "optional": True}})
        report = ingest_entity(con, optional, "marketing_events")
        assert report.status == "absent" and "does not exist" in report.warnings[0]
        assert _books(con, "marketing_events") == (0, 0, 0)


def test_a_zero_byte_or_header_only_drop_is_an_empty_day_with_a_warning(tmp_path):
    """Attack: a 0-byte daily CSV failed the whole build ("required column ... missing; found columns []")."""
    drop = tmp_path / "drop"
    _write_events(drop, "2024-01-01", ["e1,a@x.com,open,2024-01-01 10:00:00,"])
    (drop / "events_2024-01-02.csv").write_bytes(b"")
    _write_events(drop, "2024-01-03", [])
    settings = _settings(tmp_path, _events_source(drop))
    with settings.connect_warehouse() as con:
        report = ingest_entity(con, settings, "marketing_events")
        assert report.status == "loaded" and report.rows_loaded == 1
        assert any("events_2024-01-02.csv' is empty (0 bytes): loaded as an empty day" in w for w in report.warnings)
        assert any("events_2024-01-03.csv' has a header and no rows" in w for w in report.warnings)
        assert _books(con, "marketing_events") == (1, 1, 0)


def test_a_duplicated_header_name_loads_the_first_and_says_so(tmp_path):
    """Attack: a CSV with a column name twice hit a DuckDB binder error nobody could act on."""
    drop = tmp_path / "drop"
    _write_events(
        drop, "2024-01-01", ["e1,a@x.com,open,2024-01-01 10:00:00,,b@x.com"], header="id,email,type,ts,revenue,email"
    )
    settings = _settings(tmp_path, _events_source(drop))
    with settings.connect_warehouse() as con:
        report = ingest_entity(con, settings, "marketing_events")
        assert con.execute("SELECT email FROM raw.marketing_events").fetchall() == [("a@x.com",)]
        assert any("column 'email' appears 2 times in the header (fields 2, 6)" in w for w in report.drift_warnings)
        assert _books(con, "marketing_events") == (1, 1, 0)


def test_stray_file_names_are_quarantined_with_the_pattern_and_listed(tmp_path):
    """Attack: contacts_2026-9-11.csv and contacts_2026-09-11 (1).csv were neither loaded nor quarantined."""
    drop = tmp_path / "drop"
    _write_events(drop, "2024-01-01", ["e1,a@x.com,open,2024-01-01 10:00:00,"])
    (drop / "events_2024-1-2.csv").write_text("id,email,type,ts,revenue\ne2,b@x.com,open,2024-01-02 10:00:00,\n")
    (drop / "events_2024-01-03 (1).csv").write_text("id,email,type,ts,revenue\ne3,c@x.com,open,2024-01-03 10:00:00,\n")
    (drop / "notes.txt").write_text("not an export\n")
    settings = _settings(tmp_path, _events_source(drop))
    with settings.connect_warehouse() as con:
        ingest_entity(con, settings, "marketing_events")
        reasons = _reasons(con, "marketing_events")
        assert _books(con, "marketing_events") == (3, 1, 2)
        # A re-run reads the stray files again without counting them twice.
        ingest_entity(con, settings, "marketing_events")
        assert _books(con, "marketing_events") == (3, 1, 2)
    assert reasons["events_2024-1-2.csv:2"].startswith("file name 'events_2024-1-2.csv' does not match the pattern")
    assert "rename the file" in reasons["events_2024-01-03 (1).csv:2"]
    from crm.ingest.file_reader import unread_files

    assert unread_files(settings.sources["mk"]) == ["notes.txt"]


def test_non_finite_and_absurd_event_revenue_is_quarantined_not_published(tmp_path):
    """Attack: event revenue NaN / inf / 1e308 loaded and was published (campaign conversion value NaN)."""
    drop = tmp_path / "drop"
    _write_events(
        drop,
        "2024-01-01",
        [
            "e1,a@x.com,conversion,2024-01-01 10:00:00,12.50",
            "e2,a@x.com,conversion,2024-01-01 10:00:00,NaN",
            "e3,a@x.com,conversion,2024-01-01 10:00:00,inf",
            "e4,a@x.com,conversion,2024-01-01 10:00:00,1e308",
            "e5,a@x.com,conversion,2024-01-01 10:00:00,-Infinity",
        ],
    )
    settings = _settings(tmp_path, _events_source(drop))
    with settings.connect_warehouse() as con:
        ingest_entity(con, settings, "marketing_events")
        assert con.execute("SELECT event_id, conversion_value FROM raw.marketing_events").fetchall() == [("e1", 12.5)]
        reasons = _reasons(con, "marketing_events")
        assert _books(con, "marketing_events") == (5, 1, 4)
    assert reasons["events_2024-01-01.csv:3"] == "conversion_value: 'NaN' is not a finite number"
    assert reasons["events_2024-01-01.csv:4"] == "conversion_value: 'inf' is not a finite number"
    assert reasons["events_2024-01-01.csv:5"] == "conversion_value: '1e308' is implausibly large (|value| >= 1e+12)"
    assert "not a finite number" in reasons["events_2024-01-01.csv:6"]


def test_infinity_and_far_future_timestamps_are_quarantined_and_offsets_kept(tmp_path):
    """Attack: one event at `infinity` made as_of_date 9999-12-31 for every customer; +05:00 was dropped."""
    drop = tmp_path / "drop"
    tomorrow = date.today() + timedelta(days=1)
    _write_events(
        drop,
        "2024-01-01",
        [
            "e1,a@x.com,open,2024-01-01T10:00:00+05:00,",
            "e2,a@x.com,open,infinity,",
            "e3,a@x.com,open,2999-01-01 00:00:00,",
            "e4,a@x.com,open,1970-01-01 00:00:00,",
            "e5,a@x.com,open,0001-01-01 00:00:00,",
            f"e6,a@x.com,open,{tomorrow} 23:00:00,",
        ],
    )
    settings = _settings(tmp_path, _events_source(drop))
    with settings.connect_warehouse() as con:
        ingest_entity(con, settings, "marketing_events")
        loaded = dict(con.execute("SELECT event_id, occurred_at FROM raw.marketing_events").fetchall())
        reasons = _reasons(con, "marketing_events")
        assert _books(con, "marketing_events") == (6, 3, 3)
    assert str(loaded["e1"]) == "2024-01-01 05:00:00"  # converted to UTC, not silently dropped
    assert "e4" in loaded and "e6" in loaded  # 1970 is old but possible; tomorrow is not yet implausible
    for line in (3, 4, 6):
        assert (
            "is not a plausible time (before 1900-01-01 or after tomorrow" in reasons[f"events_2024-01-01.csv:{line}"]
        )


def _orders_db(tmp_path: Path, rows: list[tuple]) -> dict:
    db = tmp_path / "sales.sqlite"
    with sqlite3.connect(db) as con:
        con.execute(
            "CREATE TABLE orders (id INTEGER, contact_id INTEGER, ordered_at TEXT, total_amount REAL, "
            "created_at TEXT, updated_at TEXT)"
        )
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", rows)
    return {
        "db": {
            "kind": "sql",
            "url": f"sqlite:///{db}",
            "entities": {"sales_orders": {"table": "orders", "columns": ORDERS}},
        }
    }


def _order(i: int, amount, updated: str = "2024-01-02 10:00:00") -> tuple:
    return (i, 100 + i, "2024-01-01 09:00:00", amount, "2024-01-01 09:00:00", updated)


def test_non_finite_amounts_in_the_sales_db_go_to_quarantine_and_never_reach_raw(tmp_path):
    """Attack: NaN / inf / 1e308 / negative order amounts failed the blocking GE check after being
    committed to raw, and the next one-day build published revenue = NaN."""
    settings = _settings(
        tmp_path,
        _orders_db(
            tmp_path,
            [_order(1, 10.0), _order(2, float("inf")), _order(3, float("-inf")), _order(4, 1e308), _order(5, -3.0)],
        ),
    )
    with settings.connect_warehouse() as con:
        report = ingest_entity(con, settings, "sales_orders")
        assert all(c.passed for c in report.checks if c.blocking), report.checks
        assert con.execute("SELECT order_id, total_amount FROM raw.sales_orders").fetchall() == [("1", 10.0)]
        reasons = _reasons(con, "sales_orders")
        assert _books(con, "sales_orders") == (5, 1, 4)
    assert "is not a finite number" in reasons["orders:id=2"] and "is not a finite number" in reasons["orders:id=3"]
    assert "implausibly large" in reasons["orders:id=4"]
    assert reasons["orders:id=5"] == "total_amount: '-3.0' is below the minimum 0"


def test_an_unreadable_updated_at_sends_the_row_to_quarantine_never_past_the_reader(tmp_path):
    """Attack: orders whose updated_at was empty or not ISO (2026/10/05, 05/10/2026) were never read
    and never quarantined: the database's text comparison let them fall outside every window."""
    rows = [
        _order(1, 10.0),
        _order(2, 11.0, updated=""),
        _order(3, 12.0, updated="2026/10/05"),
        _order(4, 13.0, updated="05/10/2026"),
        (5, 105, "2024-01-01 09:00:00", 14.0, "2024-01-01 09:00:00", None),
    ]
    settings = _settings(tmp_path, _orders_db(tmp_path, rows))
    with settings.connect_warehouse() as con:
        ingest_entity(con, settings, "sales_orders", Window(date(2024, 1, 1), date(2024, 1, 31)))
        reasons = _reasons(con, "sales_orders")
        assert _books(con, "sales_orders") == (5, 1, 4)
        # Nightly runs re-read the unplaceable rows and replace them: never counted twice.
        ingest_entity(con, settings, "sales_orders")
        ingest_entity(con, settings, "sales_orders")
        assert _books(con, "sales_orders") == (5, 1, 4)
    assert "cannot place the row in the history" in reasons["orders:id=3"]
    assert "only ISO-8601 text" in reasons["orders:id=3"]
    assert "cannot be placed in the history" in reasons["orders:id=2"]
    assert "could be day/month or month/day" in reasons["orders:id=4"]
    assert "cannot be placed in the history" in reasons["orders:id=5"]


def _page(export: Path, name: str, header: dict | str, tickets: list[dict]) -> None:
    export.mkdir(exist_ok=True)
    first = header if isinstance(header, str) else json.dumps(header)
    (export / f"{name}.jsonl").write_text("\n".join([first, *(json.dumps(t) for t in tickets)]) + "\n")


def _ticket(i: int, day: str) -> dict:
    return {
        "id": i,
        "status": "open",
        "created_at": f"{day} 09:00:00",
        "updated_at": f"{day} 10:00:00",
        "requester": {"email": f"r{i}@x.com"},
    }


def _desk(export: Path) -> dict:
    return {
        "desk": {
            "kind": "paged_export",
            "path": str(export),
            "first_cursor": "p1",
            "entities": {"support_tickets": {"columns": TICKETS}},
        }
    }


def _header(page: int, day: str, after: str | None, end: bool = False, count: int = 1) -> dict:
    return {"page": page, "export_date": day, "after_cursor": after, "end_of_stream": end, "count": count}


def test_a_page_that_is_not_json_is_quarantined_and_the_walk_goes_on(tmp_path):
    """Attack: a support page that is not JSON failed the step (orjson.JSONDecodeError)."""
    export = tmp_path / "export"
    _page(export, "p1", _header(1, "2024-01-01", "p2"), [_ticket(1, "2024-01-01")])
    (export / "p2.jsonl").write_text("<html>502 Bad Gateway</html>\n<body>upstream error</body>\n")
    _page(export, "p3", _header(3, "2024-01-03", "p4", end=True), [_ticket(3, "2024-01-03")])
    settings = _settings(tmp_path, _desk(export))
    with settings.connect_warehouse() as con:
        report = ingest_entity(con, settings, "support_tickets")
        assert sorted(r[0] for r in con.execute("SELECT ticket_id FROM raw.support_tickets").fetchall()) == [1, 3]
        reasons = _reasons(con, "support_tickets")
        assert _books(con, "support_tickets") == (3, 2, 1)
    assert reasons["p2.jsonl:2"].startswith("page header unreadable: the page header (line 1) is not JSON")
    assert any("walk went on at 'p3'" in w for w in report.warnings)


def test_a_page_with_a_broken_header_quarantines_its_lines_and_follows_its_cursor(tmp_path):
    """Attack: a page header without export_date failed the step (TypeError: fromisoformat)."""
    export = tmp_path / "export"
    _page(export, "p1", _header(1, "2024-01-01", "p2"), [_ticket(1, "2024-01-01")])
    _page(export, "p2", {"page": 2, "export_date": None, "after_cursor": "p3"}, [_ticket(2, "2024-01-02")])
    _page(export, "p3", _header(3, "2024-01-03", "p4", end=True), [_ticket(3, "2024-01-03")])
    settings = _settings(tmp_path, _desk(export))
    with settings.connect_warehouse() as con:
        ingest_entity(con, settings, "support_tickets")
        reasons = _reasons(con, "support_tickets")
        assert _books(con, "support_tickets") == (3, 2, 1)
    assert reasons["p2.jsonl:2"] == "page header unreadable: the page header's export_date None is not a date"


@pytest.mark.parametrize("broken_to", ["p1", "p9"], ids=["cursor loop", "dangling cursor"])
def test_a_broken_cursor_chain_is_an_error_naming_the_page(tmp_path, broken_to):
    """Attack: after_cursor pointing to itself or to a missing page silently ended the walk (tickets 345 -> 123)
    and the audit said reconciled; the stored cursor stayed stuck."""
    export = tmp_path / "export"
    _page(export, "p1", _header(1, "2024-01-01", "p2"), [_ticket(1, "2024-01-01")])
    _page(export, "p2", _header(2, "2024-01-02", broken_to), [_ticket(2, "2024-01-02")])
    _page(export, "p3", _header(3, "2024-01-03", "p4", end=True), [_ticket(3, "2024-01-03")])
    settings = _settings(tmp_path, _desk(export))
    with settings.connect_warehouse() as con:
        with pytest.raises(CursorChainError) as error:
            ingest_entity(con, settings, "support_tickets")
        assert _books(con, "support_tickets") == (0, 0, 0)  # nothing half-loaded
    message = str(error.value)
    assert "page 'p2.jsonl'" in message
    assert ("cycle" in message) if broken_to == "p1" else ("'p9.jsonl', which does not exist" in message)


def test_the_audit_reconciles_against_what_the_sources_hold(tmp_path):
    """A file nobody reads, or a table row no window reached, can never show as reconciled."""
    from crm.ingest.audit import read_audit

    drop = tmp_path / "drop"
    _write_events(drop, "2024-01-01", ["e1,a@x.com,open,2024-01-01 10:00:00,"])
    (drop / "notes.txt").write_text("nobody reads me\n")
    sources = {**_events_source(drop), **_orders_db(tmp_path, [_order(1, 10.0, updated="2024-01-05 10:00:00")])}
    settings = _settings(tmp_path, sources)
    with settings.connect_warehouse() as con:
        ingest_entity(con, settings, "marketing_events")
        ingest_entity(con, settings, "sales_orders")
    with sqlite3.connect(tmp_path / "sales.sqlite") as db:  # a row written with an old timestamp
        db.execute("INSERT INTO orders VALUES (2, 102, '2024-01-01', 5.0, '2024-01-01', '2024-01-02 08:00:00')")
    _write_events(drop, "2024-01-02", ["e2,b@x.com,open,2024-01-02 10:00:00,"])
    report = read_audit(settings)
    findings = {(f["what"], f["status"]): f for f in report["source_findings"]}
    assert not report["reconciled"]
    assert findings[("notes.txt", "never read")]["loss"]
    assert not findings[("events_2024-01-02.csv", "not loaded yet")]["loss"]
    lost = findings[("table orders", "never read")]
    assert lost["loss"] and "orders:id=2" in lost["detail"]
    with settings.connect_warehouse() as con:  # an explicit window reaches the late row
        ingest_entity(con, settings, "sales_orders", Window(date(2024, 1, 1), None))
        ingest_entity(con, settings, "marketing_events")
    (drop / "notes.txt").unlink()
    assert read_audit(settings)["reconciled"]
