"""Ingestion in slices: a window read in many slices loads exactly what one slice loads, and a
failure or a refusal in a late slice leaves raw, quarantine and the ledger as they were."""

from __future__ import annotations

import duckdb
import pytest

from crm.ingest import expectations, file_reader, page_reader, sql_reader
from crm.ingest.file_reader import _miscounted_lines, _miscounted_lines_by_regex
from crm.ingest.readers import SchemaDriftError, Window
from crm.ingest.service import IngestRefusedError, _StagedBatch, ingest_entity
from crm.security import suppression
from crm.warehouse import connect

# One entity of each source kind (file drop, SQL, paged export), and order lines (a reference rule).
SLICED = ("marketing_events", "sales_orders", "sales_products", "sales_order_lines", "support_tickets")
LEDGER = {
    "ingest_batches": "entity, source, mode, status, window_start, window_end, rows_read, rows_loaded, "
    "rows_quarantined, files_read, rows_replaced, rows_outside, days_touched, list_sort(drift_warnings), notes, "
    "list_sort(warnings), rows_suppressed",
    "loaded_files": "entity, path, partition_date, size_bytes, sha256, rows_read, modified_ns",
    "ingest_partition_counts": "entity, partition_date, rows_read, rows_loaded, rows_quarantined",
    "source_state": "entity, watermark, cursor, cursor_date, config_sha",
}


_END_SLICE = _StagedBatch.end_slice


def _slices_of(monkeypatch, rows: int, size: int) -> list[int]:
    """Make every reader hand over slices of ``rows`` rows (``size`` bytes of files); counts the slices."""
    monkeypatch.setattr(file_reader, "SLICE_BYTES", size)
    monkeypatch.setattr(sql_reader, "SLICE_ROWS", rows)
    monkeypatch.setattr(page_reader, "SLICE_ROWS", rows)
    staged: list[int] = []

    def counting(self):
        before = self.slices
        _END_SLICE(self)
        staged.extend([1] * (self.slices - before))

    monkeypatch.setattr(_StagedBatch, "end_slice", counting)
    return staged


def _load(settings, entities=SLICED, window=None) -> dict:
    with connect(settings.warehouse_path) as con:
        return {name: ingest_entity(con, settings, name, window) for name in entities}


def _contents(path, entities=SLICED) -> dict[str, list]:
    """Every row of raw, quarantine and the ledger, without what names the batch or the time."""
    found = {}
    with duckdb.connect(str(path), read_only=True) as con:
        for entity in entities:
            for schema in ("raw", "quarantine"):
                found[f"{schema}.{entity}"] = sorted(
                    con.execute(f"SELECT * EXCLUDE (_batch_id, _ingested_at) FROM {schema}.{entity}").fetchall(),
                    key=repr,
                )
        for table, columns in LEDGER.items():
            found[f"ops.{table}"] = sorted(con.execute(f"SELECT {columns} FROM ops.{table}").fetchall(), key=repr)
    return found


def _erase_an_event_email(settings, company) -> None:
    """An erased person: their events must be suppressed (and booked) in whichever slice they fall."""
    first = sorted((company / "sources" / "marketing" / "events").glob("events_*.csv"))[0]
    email = first.read_text().splitlines()[1].split(",")[1]
    key = suppression.erasure_key(settings.data_dir, create=True)
    suppression.record_request(
        settings.data_dir, {"request_id": "t1"}, suppression.identifiers_for(key, emails=[email])
    )


def test_a_history_read_in_many_slices_loads_the_rows_and_ledger_of_one_slice(
    small_company, use_company, monkeypatch, tmp_path
):
    whole = use_company(small_company, warehouse=tmp_path / "whole.duckdb")
    _erase_an_event_email(whole, small_company)
    one = _slices_of(monkeypatch, rows=10**9, size=10**12)
    whole_reports = _load(whole)
    sliced = use_company(small_company, warehouse=tmp_path / "sliced.duckdb")
    many = _slices_of(monkeypatch, rows=500, size=20_000)
    sliced_reports = _load(sliced)

    assert len(many) > 4 * len(one) and len(one) <= 2 * len(SLICED)
    assert whole_reports["marketing_events"].rows_suppressed > 0
    for name in SLICED:
        a, b = whole_reports[name], sliced_reports[name]
        assert (a.rows_read, a.rows_loaded, a.rows_quarantined, a.rows_suppressed) == (
            b.rows_read,
            b.rows_loaded,
            b.rows_quarantined,
            b.rows_suppressed,
        ), name
        assert a.quarantine_reasons == b.quarantine_reasons and a.quarantine_sample == b.quarantine_sample, name
        assert {c.name: c.passed for c in a.checks} == {c.name: c.passed for c in b.checks}, name
        assert sorted(a.drift_warnings) == sorted(b.drift_warnings) and sorted(a.warnings) == sorted(b.warnings)
    assert _contents(whole.warehouse_path) == _contents(sliced.warehouse_path)
    # Each slice's suppressed rows are booked, once, with the batch.
    for name in SLICED:
        for settings in (whole, sliced):
            with duckdb.connect(str(settings.warehouse_path), read_only=True) as con:
                booked = con.execute(
                    "SELECT count(*) FROM ops.suppressed_locations WHERE entity = $e", {"e": name}
                ).fetchone()[0]
            assert booked == whole_reports[name].rows_suppressed, name
    # The staged slices are gone once the batch is committed.
    assert not list((sliced.data_dir / "tmp").glob("ingest-*"))


def test_a_broken_file_in_a_late_slice_leaves_raw_quarantine_and_ledger_untouched(
    company_copy, use_company, monkeypatch
):
    settings = use_company(company_copy)
    _load(settings, ("marketing_events",))
    before = _contents(settings.warehouse_path, ("marketing_events",))
    events = sorted((company_copy / "sources" / "marketing" / "events").glob("events_*.csv"))
    # The newest file loses a required column: the window's earlier slices are staged, then it fails.
    header, _, rest = events[-1].read_text().partition("\n")
    events[-1].write_text(header.replace("email", "mail") + "\n" + rest)
    staged = _slices_of(monkeypatch, rows=500, size=1)
    with pytest.raises(SchemaDriftError, match="required column 'email'"):
        _load(settings, ("marketing_events",), Window(None, None))
    assert len(staged) >= len(events) - 1
    assert _contents(settings.warehouse_path, ("marketing_events",)) == before
    assert not list((settings.data_dir / "tmp").glob("ingest-*"))


def test_a_batch_refused_for_a_late_slice_leaves_raw_untouched(company_copy, use_company, monkeypatch):
    settings = use_company(company_copy)
    _load(settings, ("marketing_events",))
    before = _contents(settings.warehouse_path, ("marketing_events",))
    events = sorted((company_copy / "sources" / "marketing" / "events").glob("events_*.csv"))
    # The newest file's rows all break a rule, enough of them to put the batch over the quarantine limit.
    header, _, rest = events[-1].read_text().partition("\n")
    total = sum(len(path.read_text().splitlines()) - 1 for path in events)
    fields = rest.splitlines()[0].split(",")
    fields[header.split(",").index("event_type")] = "teleport"
    bad_line = ",".join(fields)
    events[-1].write_text(header + "\n" + "\n".join([bad_line] * total) + "\n")
    _slices_of(monkeypatch, rows=500, size=50_000)
    with pytest.raises(IngestRefusedError, match="quarantine_share_within_limit"):
        _load(settings, ("marketing_events",), Window(None, None))
    assert _contents(settings.warehouse_path, ("marketing_events",)) == before


def test_the_contract_runs_on_a_bounded_sample_of_a_large_batch(small_company, use_company, monkeypatch):
    settings = use_company(small_company)
    monkeypatch.setattr(expectations, "MAX_VALIDATED_ROWS", 1_000)
    report = _load(settings, ("marketing_events",))["marketing_events"]
    contract = next(c for c in report.checks if c.name == "great_expectations_contract")
    assert contract.passed and report.rows_loaded > 1_000
    assert "met on 1,000 rows (a seeded sample of the batch's" in contract.message


@pytest.mark.parametrize(
    "data",
    [
        b'a,b,c\n1,2,\n1,2,3,\n1,2,,\r\n\n1,"x,y",\n1,"x,""y",z,\n"open,2,\n1,2,3',
        b"a,b,c\r\n1,2,3,\r\n1,2,3\r\n,,,,\r\n",
        b"a,b,c\n1,2,3,",
    ],
)
def test_lines_with_a_trailing_extra_field_are_found_as_the_line_by_line_reading_finds_them(data):
    assert _miscounted_lines(data, ",", 3) == _miscounted_lines_by_regex(data, b",", 3)
    assert [line for line, _, _ in _miscounted_lines(b"a,b,c\n1,2,3,\n1,2,\n", ",", 3)] == [2]
