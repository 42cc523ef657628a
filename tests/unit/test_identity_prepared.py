"""The normalised records kept between runs (crm.identity.prepared): a run that normalises only the
new and changed records gives exactly what normalising every record gives."""

from __future__ import annotations

from datetime import datetime

import duckdb
import polars as pl
from polars.testing import assert_frame_equal

from crm.identity import prepared
from crm.identity.records import RECORD_SCHEMA, prepare_records


def _raw(rows: list[dict]) -> pl.DataFrame:
    base = dict.fromkeys(RECORD_SCHEMA)
    return pl.DataFrame([{**base, **row} for row in rows], schema=RECORD_SCHEMA)


DAY = datetime(2025, 1, 1)
FIRST = [
    {
        "source": "sales_contacts",
        "source_system": "a",
        "source_key": "1",
        "email": "Ann.Lee@Example.com",
        "first_name": "ann",
        "last_name": "LEE",
        "phone_raw": "020 7946 0018",
        "created_at": DAY,
    },
    {
        "source": "sales_contacts",
        "source_system": "a",
        "source_key": "2",
        "full_name": "Bob Stone",
        "external_ids": '{"loyalty_card": "LC-9"}',
        "created_at": DAY,
    },
    {
        "source": "support_tickets",
        "source_system": "s",
        "source_key": "t1",
        "email": "carol@example.org",
        "birth_date": "03/04/1980",
        "postcode": "sw1a 1aa",
        "external_ids": '{"vat": "GB123"}',
    },
    {"source": "marketing_contacts", "source_system": "m", "source_key": "x", "email": "dan@example.net"},
]


def _run(con, raw, full=False):
    records, delta = prepared.prepare(con, raw, full=full)
    con.execute("create schema if not exists identity")
    con.execute("begin")
    prepared.write_prepared(con, delta)
    con.execute("commit")
    return records, delta


def test_only_new_and_changed_records_are_normalised_and_the_result_is_a_full_runs():
    con = duckdb.connect()
    first, delta = _run(con, _raw(FIRST))
    assert delta.full and delta.normalised == 4
    assert_frame_equal(first, prepare_records(_raw(FIRST)))

    # a day later: one changed, one gone (the only record with a vat id), one new with a new kind of id
    second_rows = [dict(r) for r in FIRST if r["source_key"] != "t1"]
    second_rows[0]["last_name"] = "Lee-Smith"
    second_rows.append(
        {
            "source": "support_tickets",
            "source_system": "s",
            "source_key": "t2",
            "email": "eve@example.org",
            "external_ids": '{"member_no": "M-7781"}',
            "updated_at": DAY,
        }
    )
    second, delta = _run(con, _raw(second_rows))
    assert not delta.full and delta.normalised == 2
    assert_frame_equal(second, prepare_records(_raw(second_rows)))
    assert "id_vat" not in second.columns and "id_member_no" in second.columns

    # nothing changed: nothing normalised, the same records
    third, delta = _run(con, _raw(second_rows))
    assert delta.normalised == 0
    assert_frame_equal(third, prepare_records(_raw(second_rows)))

    # a full run (reresolve) normalises everything again
    _, delta = _run(con, _raw(second_rows), full=True)
    assert delta.full and delta.normalised == 4


def test_other_settings_normalise_everything_again():
    con = duckdb.connect()
    _run(con, _raw(FIRST))
    records, delta = prepared.prepare(con, _raw(FIRST), "US")
    assert delta.full and delta.normalised == 4
    assert_frame_equal(records, prepare_records(_raw(FIRST), "US"))
