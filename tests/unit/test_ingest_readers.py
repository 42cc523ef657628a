"""Readers, row rules and the config, on tiny hand-made sources whose right answer is known."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest
import yaml

from crm.ingest.entities import ENTITIES
from crm.ingest.readers import SchemaDriftError, Window
from crm.ingest.service import ingest_entity
from crm.settings import ConfigError, load_settings

JAN = Window(date(2024, 1, 1), date(2024, 1, 31))


def _config(tmp_path: Path, sources: dict) -> Path:
    path = tmp_path / "sources.yml"
    path.write_text(
        yaml.safe_dump(
            {"warehouse_path": str(tmp_path / "wh.duckdb"), "history_start": "2024-01-01", "sources": sources}
        )
    )
    return path


def _events_source(tmp_path: Path, **mapping_extra) -> dict:
    mapping = {
        "pattern": "events_{date}.csv",
        "columns": {"event_id": "id", "email": "email", "event_type": "type", "occurred_at": "ts"},
        **mapping_extra,
    }
    return {"drop": {"kind": "file_drop", "path": str(tmp_path / "drop"), "entities": {"marketing_events": mapping}}}


def _rows(con, sql):
    return con.execute(sql).fetchall()


def test_csv_rows_keep_their_physical_line_and_broken_lines_are_quarantined(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "events_2024-01-05.csv").write_bytes(
        b"id,email,type,ts\n"
        b"e1,a@x.com,open,2024-01-05 10:00:00\n"  # line 2: fine
        b"e2,b@x.com,open\n"  # line 3: a field short
        b"e3,caf\xe9@x.com,click,2024-01-05 11:00:00\n"  # line 4: Latin-1 byte
        b"e4,d@x.com,teleport,2024-01-05 12:00:00\n"  # line 5: unknown event type
        b"e5,e@x.com,click,2024-01-05 25:00:00\n"  # line 6: no such hour
        b"e6,,sent,2024-01-05 13:00:00\n"  # line 7: missing email
        b"e7,f@x.com,sent,2024-01-05 14:00:00\n"  # line 8: fine
    )
    (drop / "events_2024-02-01.csv").write_bytes(b"id,email,type,ts\ne9,z@x.com,open,2024-02-01 00:00:00\n")
    settings = load_settings(_config(tmp_path, _events_source(tmp_path)))
    with duckdb.connect(str(settings.warehouse_path)) as con:
        report = ingest_entity(con, settings, "marketing_events", JAN)
        loaded = _rows(con, "SELECT event_id, _source_location FROM raw.marketing_events ORDER BY event_id")
        quarantined = dict(_rows(con, "SELECT _source_location, _reason FROM quarantine.marketing_events"))
    assert (report.rows_read, report.rows_loaded, report.rows_quarantined) == (7, 2, 5)
    assert loaded == [("e1", "events_2024-01-05.csv:2"), ("e7", "events_2024-01-05.csv:8")]
    assert quarantined["events_2024-01-05.csv:3"].startswith("broken CSV line: MISSING COLUMNS")
    assert quarantined["events_2024-01-05.csv:4"].startswith("broken CSV line: INVALID ENCODING")
    assert quarantined["events_2024-01-05.csv:5"] == (
        "event_type: unknown value 'teleport' (expected one of sent, delivered, open, click, unsubscribe, bounce, conversion)"
    )
    assert quarantined["events_2024-01-05.csv:6"].startswith(
        "occurred_at: not a valid timestamp '2024-01-05 25:00:00' (expected ISO-8601"
    )
    assert "declare date_format" in quarantined["events_2024-01-05.csv:6"]
    assert quarantined["events_2024-01-05.csv:7"] == "email: missing required value"


def test_a_required_column_that_vanished_names_source_file_and_column(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "events_2024-01-05.csv").write_text("id,email,kind,ts\ne1,a@x.com,open,2024-01-05\n")
    settings = load_settings(_config(tmp_path, _events_source(tmp_path)))
    with duckdb.connect(str(settings.warehouse_path)) as con, pytest.raises(SchemaDriftError) as error:
        ingest_entity(con, settings, "marketing_events", JAN)
    message = str(error.value)
    assert "source 'drop'" in message and "file 'events_2024-01-05.csv'" in message
    assert "required column 'type'" in message and "renames" in message


def test_a_known_rename_is_followed_and_new_columns_are_reported(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "events_2024-01-05.csv").write_text("id,email,kind,ts,device\ne1,a@x.com,open,2024-01-05,ios\n")
    settings = load_settings(_config(tmp_path, _events_source(tmp_path, renames={"kind": "type"})))
    with duckdb.connect(str(settings.warehouse_path)) as con:
        report = ingest_entity(con, settings, "marketing_events", JAN)
        assert _rows(con, "SELECT event_type FROM raw.marketing_events") == [("open",)]
    assert report.drift_warnings == [
        "source 'drop', file 'events_2024-01-05.csv': new column 'device' is not mapped and was not loaded "
        "(map it under `columns`, or add it to `ignore_columns` of entity 'marketing_events' to silence this)"
    ]


def test_paged_export_follows_the_cursor_and_quarantines_broken_json(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    ticket = '{"id": %d, "status": "%s", "created_at": "2024-01-0%d 09:00:00", "updated_at": "2024-01-0%d 10:00:00", "requester": {"email": "x@y.z"}}'
    (export / "p1.jsonl").write_text(
        '{"page": 1, "export_date": "2024-01-02", "after_cursor": "p2", "end_of_stream": false}\n'
        + ticket % (1, "open", 2, 2)
        + "\n"
        + '{"id": 2, "status": "open", "created_at": \n'
    )
    (export / "p2.jsonl").write_text(
        '{"page": 2, "export_date": "2024-01-03", "after_cursor": "p3", "end_of_stream": true}\n'
        + ticket % (1, "solved", 2, 3)
        + "\n"
    )
    (export / "orphan.jsonl").write_text('{"page": 9, "export_date": "2024-01-04", "end_of_stream": true}\n')
    sources = {
        "desk": {
            "kind": "paged_export",
            "path": str(export),
            "first_cursor": "p1",
            "entities": {
                "support_tickets": {
                    "columns": {
                        "ticket_id": "id",
                        "status": "status",
                        "created_at": "created_at",
                        "updated_at": "updated_at",
                        "requester_email": "requester.email",
                    }
                }
            },
        }
    }
    settings = load_settings(_config(tmp_path, sources))
    with duckdb.connect(str(settings.warehouse_path)) as con:
        report = ingest_entity(con, settings, "support_tickets", JAN)
        loaded = _rows(
            con, "SELECT ticket_id, status, requester_email, _partition_date FROM raw.support_tickets ORDER BY 4"
        )
        broken = _rows(con, "SELECT _source_location, _reason FROM quarantine.support_tickets")
        state = _rows(con, "SELECT cursor, cursor_date FROM ops.source_state")
    assert (report.rows_read, report.rows_loaded, report.rows_quarantined, report.files_read) == (3, 2, 1, 2)
    assert loaded == [(1, "open", "x@y.z", date(2024, 1, 2)), (1, "solved", "x@y.z", date(2024, 1, 3))]
    assert broken[0][0] == "p1.jsonl:3" and broken[0][1].startswith("broken JSON line")
    assert state == [("p3", date(2024, 1, 3))]


def test_a_page_whose_only_line_is_broken_is_quarantined_not_taken_for_schema_drift(tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    # the simulator's mess: a ticket line with bytes that are not UTF-8, alone on its page
    (export / "p1.jsonl").write_bytes(
        b'{"page": 1, "export_date": "2024-01-02", "after_cursor": "p2", "end_of_stream": true}\n'
        b'{"id": 7, "status": "open", "subject": "Probl\xe8me", "created_at": "2024-01-02 09:00:00"}\n'
    )
    sources = {
        "desk": {
            "kind": "paged_export",
            "path": str(export),
            "first_cursor": "p1",
            "entities": {
                "support_tickets": {
                    "columns": {
                        "ticket_id": "id",
                        "status": "status",
                        "created_at": "created_at",
                        "updated_at": "created_at",
                    }
                }
            },
        }
    }
    settings = load_settings(_config(tmp_path, sources))
    with duckdb.connect(str(settings.warehouse_path)) as con:
        report = ingest_entity(con, settings, "support_tickets", JAN)
        broken = _rows(con, "SELECT _source_location FROM quarantine.support_tickets")
    assert (report.rows_read, report.rows_loaded, report.rows_quarantined) == (1, 0, 1)
    assert broken == [("p1.jsonl:2",)]
    assert report.drift_warnings == []


def test_sql_source_reads_the_updated_at_window_and_names_table_and_key(tmp_path):
    import sqlite3

    db = tmp_path / "sales.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE products (id INTEGER, name TEXT, price REAL, created_at TEXT, updated_at TEXT)")
        con.executemany(
            "INSERT INTO products VALUES (?, ?, ?, ?, ?)",
            [
                (1, "pen", 1.5, "2023-12-01 00:00:00", "2024-01-10 08:00:00"),
                (2, "ink", -3, "2023-12-01 00:00:00", "2024-01-11 08:00:00"),
                (3, "pad", 2.0, "2023-12-01 00:00:00", "2024-02-11 08:00:00"),  # outside the window
            ],
        )
    sources = {
        "db": {
            "kind": "sql",
            "url": f"sqlite:///{db}",
            "entities": {
                "sales_products": {
                    "table": "products",
                    "columns": {
                        "product_id": "id",
                        "product_name": "name",
                        "list_price": "price",
                        "created_at": "created_at",
                        "updated_at": "updated_at",
                    },
                }
            },
        }
    }
    settings = load_settings(_config(tmp_path, sources))
    with duckdb.connect(str(settings.warehouse_path)) as con:
        report = ingest_entity(con, settings, "sales_products", JAN)
        assert _rows(con, "SELECT product_id, _partition_date FROM raw.sales_products") == [(1, date(2024, 1, 10))]
        assert _rows(con, "SELECT _source_location, _reason FROM quarantine.sales_products") == [
            ("products:id=2", "list_price: '-3.0' is below the minimum 0")
        ]
        assert _rows(con, "SELECT watermark FROM ops.source_state") == [("2024-01-11 08:00:00",)]
    assert report.rows_read == 2


def test_config_fills_environment_variables_and_rejects_unknown_entities(tmp_path, monkeypatch):
    monkeypatch.setenv("SHOP_DIR", str(tmp_path / "exports"))
    monkeypatch.delenv("UNSET_DIR", raising=False)
    path = tmp_path / "c.yml"
    path.write_text(
        "warehouse_path: ${UNSET_DIR:-/tmp/x}/wh.duckdb\nsources:\n  s:\n    kind: file_drop\n    path: ${SHOP_DIR}\n"
        "    entities:\n      sales_orders:\n        pattern: o.csv\n"
        "        columns: {customer_ref: c, order_date: d, total_amount: a}\n"
    )
    settings = load_settings(path)
    assert str(settings.warehouse_path) == "/tmp/x/wh.duckdb"
    assert settings.sources["s"].path == tmp_path / "exports"
    path.write_text(path.read_text().replace("sales_orders", "sales_invoices"))
    with pytest.raises(ConfigError, match="unknown entity 'sales_invoices'"):
        load_settings(path)
    path.write_text(path.read_text().replace("sales_invoices", "sales_orders").replace("total_amount: a", "channel: a"))
    with pytest.raises(ConfigError, match=r"required canonical columns \['total_amount'\] are not mapped"):
        load_settings(path)


def test_every_entity_has_a_key_and_typed_columns():
    allowed = {"VARCHAR", "BIGINT", "DOUBLE", "DATE", "TIMESTAMP", "BOOLEAN"}
    for entity in ENTITIES.values():
        assert set(entity.key) <= set(entity.column_names), entity.name
        assert {c.dtype for c in entity.columns} <= allowed, entity.name
