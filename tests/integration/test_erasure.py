"""Erasure on a small built company, end to end through the real `crm` commands.

A company of 150 persons and a month is generated with one hostile name in its sales database,
built once with `crm build` (Dagster's storage and the build log under the data folder, as in the
default layout), a saved segment exported, one person erased with `crm erase --email`, and every
source row ingested again from the untouched sources, the snapshot published again and the
segments re-exported (the rebuild's ingest and serving steps, in process: dbt and identity only
read raw and identity, which the erasure cleaned, and would double the test's time). Then no file
under the data folder holds their email or any written form of their phone (bytes, and inside
DuckDB, Parquet and Excel files), the suppression list and the audit trail record the request
without the values, and the ledger counts the person's source rows as suppressed.
"""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pytest

from crm.settings import DEFAULT_CONFIG

HOSTILE_NAME = '=HYPERLINK("http://x","y")'
CRM = str(Path(sys.executable).with_name("crm"))


@dataclass(frozen=True)
class ErasureCompany:
    root: Path
    data_dir: Path
    env: dict[str, str]
    email: str
    phones: list[str]  # every written form of their phone in the sources, and E.164
    customer_id: str
    erase_output: str


def crm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CRM, *args], env=env, capture_output=True, text=True, timeout=900)


def _person(con: duckdb.DuckDBPyConnection) -> tuple[str, str, str]:
    """Someone every source knows (sales contact, marketing contact, support tickets) with a phone."""
    return con.execute(
        "SELECT customer_id, any_value(email), any_value(phone_e164) FROM identity.records "
        "WHERE email IS NOT NULL AND phone_e164 IS NOT NULL GROUP BY customer_id "
        "HAVING count(DISTINCT source) = 3 ORDER BY customer_id LIMIT 1"
    ).fetchall()[0]


def _written_phones(sources: Path, e164: str) -> list[str]:
    """How the sources write this number ('07700 900123', '+44 7700 900123', ...)."""
    national = e164[-10:]
    found = {e164}
    pattern = re.compile(rb"\+?[0-9(][0-9 ().\-]{6,}[0-9]")
    for path in sources.rglob("*"):
        if path.is_file():
            for token in pattern.findall(path.read_bytes()):
                if re.sub(rb"\D", b"", token).endswith(national.encode()):
                    found.add(token.decode())
    return sorted(found)


@pytest.fixture(scope="session")
def erasure_company(tmp_path_factory) -> ErasureCompany:
    from simulator import SimulationConfig, generate

    root = tmp_path_factory.mktemp("erasure_company")
    start = date.today() - timedelta(days=31)
    generate(SimulationConfig(customers=150, seed=5, start=start, days=30, out=root / "sources"))
    with sqlite3.connect(root / "sources" / "sales" / "sales.sqlite") as db:
        db.execute("UPDATE contacts SET first_name = ? WHERE id = (SELECT min(id) FROM contacts)", [HOSTILE_NAME])
    data_dir = root / "data"
    env = {
        **os.environ,
        "CRM_CONFIG": str(DEFAULT_CONFIG),
        "CRM_SOURCES_DIR": str(root / "sources"),
        "CRM_DATA_DIR": str(data_dir),
        # the warehouse inside the data folder, as in the default layout: the byte search covers it
        "CRM_WAREHOUSE_PATH": str(data_dir / "warehouse" / "crm.duckdb"),
        "CRM_HISTORY_START": start.isoformat(),
        "CRM_GROUND_TRUTH_DIR": str(root / "ground_truth"),
    }
    env.pop("CRM_SALES_DB_URL", None)
    built = crm(env, "build")
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    with duckdb.connect(str(data_dir / "warehouse" / "crm.duckdb"), read_only=True) as con:
        customer_id, email, e164 = _person(con)
    phones = _written_phones(root / "sources", e164)

    from crm.serving.segments import SegmentDefinition, export_saved_segments, save_segment

    save_segment(data_dir, SegmentDefinition(name="Everyone"))
    export_saved_segments(data_dir)
    assert _files_holding(data_dir, email, phones), "the scan finds the person before the erasure"
    erased = crm(env, "erase", "--email", email.upper(), "--reason", "request 42")
    assert erased.returncode == 0, erased.stdout[-3000:] + erased.stderr[-3000:]
    _rebuild_from_sources(env)
    return ErasureCompany(root, data_dir, env, email, phones, customer_id, erased.stdout)


def _rebuild_from_sources(env: dict[str, str]) -> None:
    """Every source row read again (the same partitions as the first build), then published again,
    in the project's Dagster instance under the data folder."""
    from crm.settings import load_settings
    from pipelines.build import run_build

    with pytest.MonkeyPatch.context() as mp:
        for name in ("CRM_CONFIG", "CRM_SOURCES_DIR", "CRM_DATA_DIR", "CRM_WAREHOUSE_PATH", "CRM_HISTORY_START"):
            mp.setenv(name, env[name])
        mp.setenv("CRM_GROUND_TRUTH_DIR", env["CRM_GROUND_TRUTH_DIR"])
        outcome = run_build(load_settings(), groups=["ingest", "serving"])
    assert outcome.success, outcome.failures


def _files_holding(data_dir: Path, email: str, phones: list[str]) -> list[str]:
    """Every file under the data folder holding the email (any case) or a written phone, in its bytes
    or inside a format that compresses text (DuckDB tables, Parquet, the xlsx zip)."""
    from crm.security.erasure import Person, files_holding

    values = [email, *phones]
    pattern = re.compile(b"|".join(re.escape(v.encode()) for v in values), re.IGNORECASE)
    person = Person([], [], {email.lower()}, {p for p in phones if p.startswith("+")}, set(), {})
    return files_holding(data_dir, pattern, person)


def test_after_erasure_and_a_rebuild_no_file_under_the_data_folder_holds_the_person(erasure_company):
    company = erasure_company
    assert "Erasure erasure-" in company.erase_output and "raw.marketing_contacts" in company.erase_output
    assert _files_holding(company.data_dir, company.email, company.phones) == []
    # Dagster's storage and the build logs are under the data folder too, and were searched.
    assert list((company.data_dir / "dagster").rglob("*.db")) and list((company.data_dir / "logs").glob("*.log"))
    with duckdb.connect(str(company.data_dir / "warehouse" / "crm.duckdb"), read_only=True) as con:
        assert not con.execute(
            "SELECT count(*) FROM identity.records WHERE lower(email) = ? OR customer_id = ?",
            [company.email.lower(), company.customer_id],
        ).fetchall()[0][0]
        # The records identity keeps from run to run (as read and as normalised) are swept too.
        for table in ("identity.source_records", "identity.prepared_records"):
            held = con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]
            assert held > 100, f"{table} is kept by the build ({held} rows)"
            assert not con.execute(
                f"SELECT count(*) FROM {table} WHERE lower(email) = ?", [company.email.lower()]
            ).fetchall()[0][0], table


def test_the_request_is_recorded_without_the_values_and_ingestion_suppresses_the_person(erasure_company):
    company = erasure_company
    requests = [
        json.loads(line)
        for line in (company.data_dir / "security" / "suppression.jsonl").read_text().splitlines()
        if line.strip()
    ]
    assert len(requests) == 1 and {kind for kind, _ in requests[0]["identifiers"]} >= {"email", "key:sales_contacts"}
    erasures = [
        json.loads(line)
        for line in (company.data_dir / "audit" / "events.jsonl").read_text().splitlines()
        if '"erase"' in line
    ]
    assert len(erasures) == 1 and erasures[0]["details"]["reason"] == "request 42"
    assert erasures[0]["details"]["rows_deleted"]["raw.marketing_contacts"] >= 1
    for private in ("security/suppression.jsonl", "security/erasure.key", "audit/events.jsonl"):
        assert (company.data_dir / private).stat().st_mode & 0o077 == 0, private
    # The rebuild re-read every source row: the person's rows were suppressed, none lost.
    audit = crm(company.env, "audit", "--json")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    with duckdb.connect(str(company.data_dir / "warehouse" / "crm.duckdb"), read_only=True) as con:
        suppressed = dict(
            con.execute("SELECT entity, rows_suppressed FROM ops.ingest_reconciliation WHERE reconciled").fetchall()
        )
        assert con.execute("SELECT bool_and(reconciled) FROM ops.ingest_reconciliation").fetchall()[0][0]
    assert suppressed["marketing_contacts"] >= 1 and suppressed["sales_contacts"] >= 1


def test_a_hostile_name_from_the_source_reaches_csv_and_excel_exports_as_inert_text(erasure_company, monkeypatch):
    from app import data
    from crm.security.roles import Viewer
    from crm.serving.snapshots import current_snapshot

    monkeypatch.setenv("CRM_DATA_DIR", str(erasure_company.data_dir))  # the audit trail of this company
    reader = data.SnapshotReader(
        current_snapshot(erasure_company.data_dir), Viewer.for_role("test-marketer", "marketer")
    )
    try:
        everyone = data.SegmentDefinition(name="everyone")
        csv = data.export_bytes(reader, everyone, "CSV")
        excel = data.export_bytes(reader, everyone, "Excel")
    finally:
        reader.close()
    names = [n for n in pl.read_csv(io.BytesIO(csv))["full_name"].to_list() if n and "hyperlink" in n.lower()]
    assert names and all(name.startswith("'=") for name in names), names
    assert not re.search(rb"(^|[\n,])=HYPERLINK", csv, re.IGNORECASE)
    sheet = pl.read_excel(io.BytesIO(excel), engine="calamine")
    assert [n for n in sheet["full_name"].to_list() if n and "hyperlink" in n.lower()] == names
    nightly = erasure_company.data_dir / "exports" / "everyone.csv"
    assert [n for n in pl.read_csv(nightly)["full_name"].to_list() if n and "hyperlink" in n.lower()] == names
    assert not re.search(rb"(^|[\n,])=HYPERLINK", nightly.read_bytes(), re.IGNORECASE)
