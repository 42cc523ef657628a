"""Two shops feeding one entity, read the way issue 10 reads (the ledger is the cursor): each source
keeps its own watermark, a second run reads only what is new in each, re-reading one source never
replaces the other's rows, and the books balance for the entity as a whole."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import yaml

from crm.ingest.readers import Window
from crm.ingest.service import ingest_entity, refresh_reconciliation
from crm.settings import load_settings

ORDERS = {
    "order_id": "id",
    "customer_ref": "contact_id",
    "order_date": "ordered_at",
    "total_amount": "total_amount",
    "created_at": "created_at",
    "updated_at": "updated_at",
}


def _shop(tmp_path: Path, name: str, rows: list[tuple]) -> dict:
    db = tmp_path / f"{name}.sqlite"
    with sqlite3.connect(db) as con:
        con.execute(
            "CREATE TABLE IF NOT EXISTS orders (id INTEGER, contact_id INTEGER, ordered_at TEXT, total_amount REAL, "
            "created_at TEXT, updated_at TEXT)"
        )
        con.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?)", rows)
    return {
        "kind": "sql",
        "url": f"sqlite:///{db}",
        "entities": {"sales_orders": {"table": "orders", "columns": ORDERS}},
    }


def _order(i: int, day: str, amount: float = 10.0) -> tuple:
    return (i, 100 + i, f"{day} 09:00:00", amount, f"{day} 09:00:00", f"{day} 10:00:00")


def _rows(con) -> list[tuple]:
    return con.execute(
        "SELECT _source_system, order_id, total_amount FROM raw.sales_orders ORDER BY _source_system, order_id"
    ).fetchall()


def test_two_shops_keep_their_own_cursor_and_never_replace_each_others_rows(tmp_path):
    north = _shop(tmp_path, "north", [_order(1, "2024-01-01"), _order(2, "2024-01-02")])
    south = _shop(tmp_path, "south", [_order(1, "2024-01-01", 99.0)])
    path = tmp_path / "sources.yml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "sources": {"north": north, "south": south}}))
    settings = load_settings(path)
    with settings.connect_warehouse() as con:
        first = ingest_entity(con, settings, "sales_orders")
        assert (first.source, first.rows_read, first.rows_loaded) == ("north, south", 3, 3)
        # Order 1 of each shop is two orders: keys are compared within one source only.
        assert _rows(con) == [("north", "1", 10.0), ("north", "2", 10.0), ("south", "1", 99.0)]
        cursors = dict(con.execute("SELECT entity, watermark FROM ops.source_state").fetchall())
        assert set(cursors) == {"sales_orders@north", "sales_orders@south"}

        # Only the south shop has something new; the north shop's watermark day is read again (its
        # rows replaced by themselves), nothing is counted twice.
        _shop(tmp_path, "south", [_order(2, "2024-01-03", 5.0)])
        second = ingest_entity(con, settings, "sales_orders")
        assert second.rows_loaded == second.rows_read
        assert _rows(con) == [("north", "1", 10.0), ("north", "2", 10.0), ("south", "1", 99.0), ("south", "2", 5.0)]

        # Re-reading a window re-reads both shops' days and replaces only what each read.
        ingest_entity(con, settings, "sales_orders", Window(None, None))
        assert len(_rows(con)) == 4
        books = next(r for r in refresh_reconciliation(con) if r["entity"] == "sales_orders")
        assert books["reconciled"] and books["rows_in_raw"] == 4, books


def test_crm_check_probes_each_source_of_an_entity_apart(tmp_path):
    from crm.ingest.check import check_sources

    north = _shop(tmp_path, "north", [_order(1, "2024-01-01"), _order(2, "2024-01-02")])
    south = _shop(tmp_path, "south", [_order(1, "2024-01-05")])
    path = tmp_path / "sources.yml"
    path.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "sources": {"north": north, "south": south}}))
    report = check_sources(load_settings(path))
    probed = {(e.entity, e.source): (e.rows_read, str(e.first_day), str(e.last_day)) for e in report.entities}
    assert probed == {
        ("sales_orders", "north"): (2, "2024-01-01", "2024-01-02"),
        ("sales_orders", "south"): (1, "2024-01-05", "2024-01-05"),
    }
    assert not (tmp_path / "data" / "warehouse").exists(), "a dry run writes no warehouse"
