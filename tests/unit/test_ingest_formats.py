"""Formats by declaration, what a run reads (the ledger is the cursor), and the history's start, on hand-made files."""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import pytest
import yaml

from crm.ingest.readers import SchemaDriftError, Window
from crm.ingest.service import OutsideHistoryError, ingest_entity, refresh_reconciliation
from crm.settings import ConfigError, load_settings

ORDERS = {"customer_ref": "customer", "order_date": "date", "total_amount": "amount"}


def _shop(tmp_path: Path, text: bytes | str, *, source: dict | None = None, entity: dict | None = None, **top):
    shop = tmp_path / "shop"
    shop.mkdir(exist_ok=True)
    (shop / "orders.csv").write_bytes(text if isinstance(text, bytes) else text.encode())
    config = {
        "data_dir": str(tmp_path / "data"),
        "sources": {
            "shop": {
                "kind": "file_drop",
                "path": "shop",  # relative: resolved against the config file's folder
                **(source or {}),
                "entities": {
                    "sales_orders": {
                        "pattern": "orders.csv",
                        "single_file": True,
                        "date_column": "order_date",
                        "columns": ORDERS,
                        **(entity or {}),
                    }
                },
            }
        },
        **top,
    }
    path = tmp_path / "crm.yml"
    path.write_text(yaml.safe_dump(config))
    return load_settings(path)


def _load(settings, window: Window | None = None):
    with settings.connect_warehouse() as con:
        report = ingest_entity(con, settings, "sales_orders", window)
        rows = con.execute(
            "SELECT customer_ref, CAST(order_date AS DATE), total_amount FROM raw.sales_orders ORDER BY ALL"
        ).fetchall()
        reasons = dict(con.execute("SELECT _source_location, _reason FROM quarantine.sales_orders").fetchall())
        books = next(r for r in refresh_reconciliation(con) if r["entity"] == "sales_orders")
    assert books["reconciled"], books
    return report, rows, reasons


def test_a_cdnow_like_file_with_yyyymmdd_dates_loads_without_a_declaration(tmp_path):
    """The case of issue 10: 1990s orders, dates 19970101, history_start auto: every row loads."""
    settings = _shop(tmp_path, "customer,date,cds,amount\n00001,19970101,1,11.77\n00002,19980630,5,77.00\n")
    assert settings.sources["shop"].path == tmp_path / "shop"
    report, rows, _ = _load(settings)
    assert rows == [("00001", date(1997, 1, 1), 11.77), ("00002", date(1998, 6, 30), 77.0)]
    assert any("new column 'cds' is not mapped" in w and "ignore_columns" in w for w in report.drift_warnings)


def test_declared_formats_decimal_comma_and_latin1(tmp_path):
    text = "Kunde;Datum;Betrag\nMüller;31.12.2023;1.234,50\nK2;01.02.2024;7,5\nK3;2024-02-01;7.50\n"
    settings = _shop(
        tmp_path,
        text.encode("latin-1"),
        source={"delimiter": ";", "encoding": "latin-1", "decimal": ",", "date_format": "%d.%m.%Y"},
        entity={"columns": {"customer_ref": "Kunde", "order_date": "Datum", "total_amount": "Betrag"}},
    )
    _, rows, reasons = _load(settings)
    assert rows == [("K2", date(2024, 2, 1), 7.5), ("Müller", date(2023, 12, 31), 1234.5)]
    assert reasons["orders.csv:4"].startswith("order_date: '2024-02-01' does not match date_format '%d.%m.%Y'")
    assert (
        "total_amount: not a valid double '7.50' (numbers here are written with a decimal comma"
        in reasons["orders.csv:4"]
    )


def test_an_ambiguous_day_month_order_needs_a_declaration_and_the_reason_says_which(tmp_path):
    text = "customer,date,amount\nA,01/02/2024,1\nB,13/02/2024,2\n"
    _, rows, reasons = _load(_shop(tmp_path, text))
    assert rows == []
    assert "could be day/month or month/day: declare date_format '%d/%m/%Y' or '%m/%d/%Y'" in reasons["orders.csv:2"]
    _, rows, _ = _load(_shop(tmp_path, text, entity={"date_format": "%d/%m/%Y"}))
    assert rows == [("A", date(2024, 2, 1), 1.0), ("B", date(2024, 2, 13), 2.0)]


def test_utf8_with_a_byte_order_mark_and_cp1252(tmp_path):
    _, rows, _ = _load(_shop(tmp_path, b"\xef\xbb\xbfcustomer,date,amount\nA,2024-01-05,1\n"))
    assert rows == [("A", date(2024, 1, 5), 1.0)]
    cp1252 = "customer,date,amount\n\u20acuro,2024-01-05,2\n".encode("cp1252")
    _, rows, _ = _load(_shop(tmp_path, cp1252, source={"encoding": "cp1252"}))
    assert rows == [("\u20acuro", date(2024, 1, 5), 2.0)]


def test_the_delimiter_is_detected_and_a_wrong_one_is_named(tmp_path):
    text = "customer;date;amount\nA;2024-01-05;1\n"
    _, rows, _ = _load(_shop(tmp_path, text))
    assert rows == [("A", date(2024, 1, 5), 1.0)]
    settings = _shop(tmp_path, "customer,date,cds,amount\nA,2024-01-05,1,1\n", source={"delimiter": ";"})
    with settings.connect_warehouse() as con, pytest.raises(SchemaDriftError) as error:
        ingest_entity(con, settings, "sales_orders")
    assert "the header is one column 'customer,date,cds,amount': the delimiter looks like ','" in str(error.value)
    assert "set `delimiter: ','`" in str(error.value)


def test_a_bad_date_format_is_refused_by_the_config_reader(tmp_path):
    with pytest.raises(ConfigError, match="is not a strftime format"):
        _shop(tmp_path, "customer,date,amount\n", entity={"date_format": "YYYYMMDD"})


def test_rows_before_an_explicit_history_start_are_counted_and_a_source_with_none_after_fails(tmp_path):
    """The case of issue 10: README's history_start 2024-01-01 on a 1997 file read 0 rows and said reconciled."""
    text = "customer,date,amount\nA,19970101,1\nB,19980630,2\n"
    settings = _shop(tmp_path, text, history_start="2024-01-01")
    with settings.connect_warehouse() as con, pytest.raises(OutsideHistoryError) as error:
        ingest_entity(con, settings, "sales_orders")
    message = str(error.value)
    assert "2 row(s) dated 1997-01-01..1998-06-30 lie before history_start 2024-01-01" in message
    assert "set `history_start: auto`" in message and "on or before 1997-01-01" in message
    settings = _shop(tmp_path, text, history_start="1998-01-01")
    report, rows, _ = _load(settings)
    assert rows == [("B", date(1998, 6, 30), 2.0)]
    assert report.rows_outside == 1 and any("lie before history_start 1998-01-01" in w for w in report.warnings)


def test_a_single_file_is_read_again_only_when_it_changed(tmp_path):
    settings = _shop(tmp_path, "customer,date,amount\nA,2024-01-05,1\n")
    report, rows, _ = _load(settings)
    assert report.rows_read == 1
    report, rows, _ = _load(settings)
    assert (report.status, report.rows_read, len(rows)) == ("nothing new", 0, 1)
    (tmp_path / "shop" / "orders.csv").write_text("customer,date,amount\nA,2024-01-05,1\nB,2024-01-06,2\n")
    report, rows, _ = _load(settings)
    assert (report.rows_read, report.rows_replaced, len(rows)) == (2, 1, 2)


def test_daily_drops_read_only_new_or_changed_files_and_windows_replace_their_days(tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    for day in ("2024-01-01", "2024-01-02"):
        (drop / f"events_{day}.csv").write_text(f"id,email,type,ts\n{day},a@x.com,open,{day} 10:00:00\n")
    config = tmp_path / "c.yml"
    mapping = {"event_id": "id", "email": "email", "event_type": "type", "occurred_at": "ts"}
    config.write_text(
        yaml.safe_dump(
            {
                "data_dir": str(tmp_path / "data"),
                "sources": {
                    "mk": {
                        "kind": "file_drop",
                        "path": str(drop),
                        "entities": {"marketing_events": {"pattern": "events_{date}.csv", "columns": mapping}},
                    }
                },
            }
        )
    )
    settings = load_settings(config)
    with settings.connect_warehouse() as con:
        assert ingest_entity(con, settings, "marketing_events").rows_read == 2
        assert ingest_entity(con, settings, "marketing_events").status == "nothing new"
        (drop / "events_2024-01-03.csv").write_text("id,email,type,ts\nnew,b@x.com,open,2024-01-03 10:00:00\n")
        third = ingest_entity(con, settings, "marketing_events")
        assert (third.rows_read, third.rows_replaced, str(third.window)) == (1, 0, "2024-01-03..…")
        # A corrected file (same name, new content) is read again and replaces its day.
        old = drop / "events_2024-01-01.csv"
        old.write_text("id,email,type,ts\nfixed,a@x.com,click,2024-01-01 10:00:00\n")
        os.utime(old, ns=(old.stat().st_atime_ns, old.stat().st_mtime_ns + 10**9))
        fourth = ingest_entity(con, settings, "marketing_events")
        assert fourth.window == Window(date(2024, 1, 1), None) and fourth.rows_replaced == 3
        window = ingest_entity(con, settings, "marketing_events", Window(date(2024, 1, 2), date(2024, 1, 2)))
        assert (window.rows_read, window.rows_replaced) == (1, 1)
        # A drop folder emptied after the load (files archived once read): nothing new, nothing lost.
        for path in drop.iterdir():
            path.unlink()
        assert ingest_entity(con, settings, "marketing_events").status == "nothing new"
        ingest_entity(con, settings, "marketing_events", Window(date(2024, 1, 1), None))
        ids = sorted(r[0] for r in con.execute("SELECT event_id FROM raw.marketing_events").fetchall())
        batches = con.execute(
            "SELECT mode, days_touched FROM ops.ingest_batches WHERE entity = 'marketing_events' ORDER BY finished_at"
        ).fetchall()
        books = next(r for r in refresh_reconciliation(con) if r["entity"] == "marketing_events")
    assert ids == ["2024-01-02", "fixed", "new"] and books["reconciled"] and books["rows_read"] == 3
    # What changed in each run is on record: the mode and the days it touched.
    assert batches[-3] == ("window", [date(2024, 1, 2)])
    assert batches[2] == ("incremental", [date(2024, 1, 3)])
    assert batches[-1] == ("window", [])  # re-reading days whose files are gone replaced nothing
