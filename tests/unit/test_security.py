"""Security pieces that need no build: users file, roles, redaction, safe exports, segment names,
wrong-typed filters and the suppression applied to an ingested batch."""

from __future__ import annotations

import io
import json
import stat
from datetime import date

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from crm.security import suppression
from crm.security.redaction import mask_contact_details, redact_secrets, safe_examples
from crm.security.roles import AccessDenied, Viewer, load_roles
from crm.security.users import UserError, add_user, authenticate, load_users
from crm.serving.segments import (
    Condition,
    SegmentDefinition,
    SegmentError,
    load_segments,
    save_segment,
    to_csv_bytes,
    to_excel_bytes,
    where_clause,
)

HOSTILE = ['=HYPERLINK("http://x","y")', "@SUM(A1)", "+cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "\tx", "\rx"]
HARMLESS = ["+44 7700 900123", "-12.5", "O'Neil", "plain text", "-", "(0)20 7946 0018"]


def test_passwords_are_stored_as_salted_argon2_hashes_in_a_private_file(tmp_path):
    path = tmp_path / "security" / "users.json"
    add_user(path, "ann", "analyst", password="correct horse battery")
    add_user(path, "bob", "analyst", password="correct horse battery")
    text = path.read_text()
    assert "correct horse" not in text
    hashes = [u.password_hash for u in load_users(path).values()]
    assert all(h.startswith("$argon2id$") for h in hashes) and hashes[0] != hashes[1], "a salt per hash"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert authenticate(path, "ann", "correct horse battery").role == "analyst"
    assert authenticate(path, "ann", "wrong password!") is None
    assert authenticate(path, "nobody", "correct horse battery") is None


def test_users_need_a_known_role_a_rep_id_for_reps_and_a_real_password(tmp_path):
    path = tmp_path / "users.json"
    with pytest.raises(UserError, match="unknown role"):
        add_user(path, "eve", "root", password="long enough password")
    with pytest.raises(UserError, match="rep id"):
        add_user(path, "rita", "rep", password="long enough password")
    with pytest.raises(UserError, match="10 characters"):
        add_user(path, "sam", "admin", password="short")
    add_user(path, "oidc@corp.example", "steward", email="OIDC@corp.example")
    assert load_users(path)["oidc@corp.example"].password_hash is None
    assert authenticate(path, "oidc@corp.example", "") is None, "an OIDC-only user has no password to guess"


def test_roles_give_each_person_what_the_issue_says():
    roles = load_roles()
    assert set(roles) == {"admin", "analyst", "marketer", "rep", "steward"}
    analyst = Viewer.for_role("a", "analyst")
    assert analyst.can("analytics") and not analyst.can("unmask") and not analyst.can("export_contacts")
    assert Viewer.for_role("m", "marketer").can("export_contacts")
    rep = Viewer.for_role("r", "rep", rep_id=3)
    assert rep.own_book_only and not rep.can("analytics") and not rep.can("segments")
    assert Viewer.for_role("s", "steward").can("steward")
    with pytest.raises(AccessDenied, match="unmask"):
        analyst.require("unmask")


def test_secrets_and_contact_details_never_reach_what_is_printed_or_recorded(monkeypatch):
    monkeypatch.setenv("CRM_SALES_DB_PASSWORD", "hunter2-secret")
    message = "cannot connect to postgresql+psycopg://crm:s3cr3t@db.internal:5432/sales (password hunter2-secret)"
    redacted = redact_secrets(message)
    assert "s3cr3t" not in redacted and "hunter2-secret" not in redacted and "crm:***@db.internal" in redacted
    assert mask_contact_details("duplicate key ann.lee@example.com") == "duplicate key a***@example.com"
    assert safe_examples("email,_source_location", ["ann@x.example"]) == [
        "<1 value(s) withheld: email,_source_location identifies a person>"
    ]
    assert safe_examples("status", ["weird"]) == ["weird"]


def test_cells_a_spreadsheet_would_run_are_neutralised_in_csv_and_excel():
    table = pa.table({"full_name": HOSTILE + HARMLESS, "amount": [-1.5] * (len(HOSTILE) + len(HARMLESS))})
    payload = to_csv_bytes(table)
    assert b'"\'\rx"' in payload, "a carriage return at the start is neutralised too"
    # (readers turn a carriage return into a newline, so the comparison below maps it back)
    csv = pl.read_csv(io.BytesIO(payload))
    excel = pl.read_excel(io.BytesIO(to_excel_bytes(table)), engine="calamine")
    for frame in (csv, excel):
        names = [name.replace("'\n", "'\r") for name in frame["full_name"].to_list()]
        assert names[: len(HOSTILE)] == ["'" + h for h in HOSTILE]
        assert names[len(HOSTILE) :] == HARMLESS, "phones, negative numbers and plain text stay as written"
        assert frame["amount"].to_list() == [-1.5] * len(names)


def test_two_names_for_one_file_are_refused_and_a_corrupt_file_is_skipped(tmp_path):
    save_segment(tmp_path, SegmentDefinition(name="VIP list"))
    with pytest.raises(SegmentError, match="'VIP list' already uses the file vip_list.json"):
        save_segment(tmp_path, SegmentDefinition(name="vip_list"))
    with pytest.raises(SegmentError, match="saved already"):
        save_segment(tmp_path, SegmentDefinition(name="VIP list", channel="email"))
    save_segment(tmp_path, SegmentDefinition(name="VIP list", channel="email"), replace=True)
    (tmp_path / "segments" / "broken.json").write_text("{not json")
    problems: list[str] = []
    assert [s.name for s in load_segments(tmp_path, problems)] == ["VIP list"]
    assert len(problems) == 1 and problems[0].startswith("broken.json: not a segment definition")


def test_a_wrong_typed_filter_value_gets_a_plain_message():
    allowed = {"revenue_lifetime": "DOUBLE", "first_order_at": "TIMESTAMP", "city": "VARCHAR"}
    between = SegmentDefinition(
        name="x", conditions=[Condition(column="revenue_lifetime", op="between", value=["a", "z"])]
    )
    with pytest.raises(SegmentError, match="'revenue_lifetime' holds numbers; 'a' is not a number"):
        where_clause(between, allowed)
    late = SegmentDefinition(name="x", conditions=[Condition(column="first_order_at", op=">=", value="yesterday")])
    with pytest.raises(SegmentError, match="not a date"):
        where_clause(late, allowed)
    fine = SegmentDefinition(name="x", conditions=[Condition(column="revenue_lifetime", op="between", value=["1", 5])])
    assert where_clause(fine, allowed)[1] == [1.0, 5]


def test_an_erased_persons_rows_are_dropped_from_a_batch_whatever_the_format(tmp_path):
    key = suppression.erasure_key(tmp_path, create=True)
    identifiers = suppression.identifiers_for(
        key, emails=["Ann.Lee@Example.com"], national_numbers=["7700900123"], keys={"sales_contacts": ["42"]}
    )
    suppression.record_request(tmp_path, {"request_id": "r1"}, identifiers)
    assert "ann.lee" not in (tmp_path / "security" / "suppression.jsonl").read_text().lower()
    con = duckdb.connect()
    con.execute(
        "CREATE TEMP TABLE batch (contact_id VARCHAR, email VARCHAR, phone VARCHAR, _source VARCHAR, "
        "_source_location VARCHAR, _partition_date DATE)"
    )
    day = date(2025, 1, 2)
    rows = [
        ("42", None, None),  # the key
        ("7", " <mailto:ANN.LEE@example.com> ", None),  # the email, differently written
        ("8", None, "07700 900123"),  # the phone, national format
        ("9", None, "+44 (0) 7700-900-123"),  # the phone, international format
        ("10", "someone@example.com", "07700 900999"),  # somebody else
    ]
    con.executemany("INSERT INTO batch VALUES (?, ?, ?, 's', 'l', ?)", [(*r, day) for r in rows])
    con.execute(
        "CREATE TEMP TABLE rejects (_source VARCHAR, _source_location VARCHAR, _partition_date DATE, "
        "_reason VARCHAR, _field VARCHAR, _raw_record VARCHAR)"
    )
    con.executemany(
        "INSERT INTO rejects VALUES ('s', 'l', ?, 'unparseable', NULL, ?)",
        [(day, "11;Ann;Lee;ann.lee@example.com;broken"), (day, "12;Bo;+44 7700 900123"), (day, "13;Cy;cy@x.example")],
    )
    dropped = suppression.suppress_batch(
        con, "sales_contacts", tmp_path, "batch", "rejects", ["contact_id", "email", "phone"]
    )
    assert dropped == {day: 6}
    assert con.execute("SELECT contact_id FROM batch").fetchall() == [("10",)]
    assert con.execute("SELECT count(*) FROM rejects").fetchall()[0][0] == 1
    assert json.loads((tmp_path / "security" / "suppression.jsonl").read_text())["request_id"] == "r1"


def test_a_config_error_printed_by_crm_never_shows_the_database_password(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    config = tmp_path / "sources.yml"
    config.write_text(
        "warehouse_path: " + str(tmp_path / "w.duckdb") + "\n"
        "sources:\n"
        "  sales:\n"
        "    kind: sql\n"
        # no entities: pydantic's message quotes the whole source, URL and password included
        "    url: postgresql+psycopg://crm:${CRM_TEST_DB_PASSWORD}@db.internal/sales\n"
    )
    result = subprocess.run(
        [str(Path(sys.executable).with_name("crm")), "audit", "--config", str(config)],
        env={"PATH": "/usr/bin:/bin", "CRM_TEST_DB_PASSWORD": "pa55-w0rd-xyz", "CRM_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Config error" in result.stderr
    assert "pa55-w0rd-xyz" not in result.stdout + result.stderr
    from crm.config import ConfigError
    from crm.settings import load_settings

    with pytest.MonkeyPatch.context() as env:
        env.setenv("CRM_TEST_DB_PASSWORD", "pa55-w0rd-xyz")
        with pytest.raises(ConfigError) as raised:
            load_settings(config)
    assert "-xyz@db.internal" in str(raised.value), "the error itself quotes (part of) the URL: `crm` redacts it"
    assert "xyz" not in redact_secrets(str(raised.value), environ={})


def test_erasure_scrubs_sqlite_event_storage_and_text_and_sees_into_parquet_and_xlsx(tmp_path):
    import re
    import sqlite3

    import pyarrow.parquet as pq

    from crm.security.erasure import Person, files_holding, scrub_sqlite, scrub_text_file

    email, phone = "Ann.Lee@Example.com", "+44 7700 900123"
    storage = tmp_path / "dagster" / "runs.db"
    storage.parent.mkdir()
    with sqlite3.connect(storage) as db:
        db.execute("CREATE TABLE event_logs (id INTEGER PRIMARY KEY, event TEXT)")
        db.executemany(
            "INSERT INTO event_logs (event) VALUES (?)",
            [(json.dumps({"metadata": {"examples": [email.lower(), phone]}}),), ("{}",)] + [("x" * 500,)] * 50,
        )
        db.execute("DELETE FROM event_logs WHERE id > 10")
    log = tmp_path / "logs" / "build.log"
    log.parent.mkdir()
    log.write_text(f"loaded {email.upper()} and {phone}\n")
    pq.write_table(pa.table({"email": [email]}), tmp_path / "export.parquet")
    (tmp_path / "export.xlsx").write_bytes(to_excel_bytes(pa.table({"phone": [phone]})))
    person = Person([], [], {email.lower()}, {"+447700900123"}, {"7700900123"}, {}, raw_values={phone})
    pattern = person.text_patterns()
    assert len(files_holding(tmp_path, pattern)) == 4, "bytes, and inside Parquet and the xlsx zip"
    assert scrub_sqlite(storage, [email.lower(), phone]) >= 2
    assert scrub_text_file(log, pattern) == 2
    assert [re.sub(r" \(.*", "", f).rsplit("/", 1)[1] for f in files_holding(tmp_path, pattern)] == [
        "export.parquet",
        "export.xlsx",
    ]
    assert b"[erased]" in storage.read_bytes() and "[erased]" in log.read_text()
    with sqlite3.connect(storage) as db:
        assert json.loads(db.execute("SELECT event FROM event_logs WHERE id = 1").fetchall()[0][0])["metadata"]
