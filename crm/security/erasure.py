"""Erasure (GDPR Art. 17): remove one person from every copy the project keeps under the data folder.

`crm erase --email X | --phone X | --customer-id X` runs :func:`erase_person`:

1. find the person through identity resolution (every source record of their customer id, so a
   typo'd address that identity linked to them goes too); several customers sharing an address
   is refused, naming them, because erasing a shared mailbox would erase other people;
2. append their identifiers (salted hashes only) to the suppression list *first*, so a crash
   half-way still keeps the next load from bringing them back;
3. in the build warehouse, in one transaction: delete their rows from raw and quarantine (the
   original record included), moving the counts to *suppressed* in the ledger, and from every
   other table (identity, intermediate, marts, ml, seeds) that names their customer id, one of
   their records, their email or their phone; then rewrite the file, because DuckDB keeps deleted
   values in free blocks;
4. publish a new snapshot from the cleaned warehouse and delete older snapshots that still hold
   them; re-export every saved segment;
5. scrub Dagster's run storage (SQLite), compute logs, build logs, steward decisions and the audit
   trail, replacing the values with ``[erased]``; delete stray exports that hold them;
6. scan every file under the data folder for their email and phones (bytes, and the contents of
   DuckDB, Parquet and Excel files) and report anything left, with an audit event.

The sources themselves are the company's systems of record and are never touched here.
"""

from __future__ import annotations

import os
import re
import sqlite3
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from crm import audit
from crm.ingest.entities import ENTITIES
from crm.security import suppression
from crm.security.suppression import Identifier

ERASED = "[erased]"
# Tables of the ingestion ledger: counts only, adjusted rather than scanned.
LEDGER_TABLES = {"ingest_batches", "ingest_partition_counts", "loaded_files", "source_state"}
# Columns whose digits may hold a phone number written in any format.
_PHONE_COLUMN = re.compile(r"phone|value|raw_record|detail|description|metadata|comment|note", re.IGNORECASE)
# (source column, key column) pairs that name one source record.
RECORD_COLUMN_PAIRS = (("source", "source_key"), ("left_source", "left_key"), ("right_source", "right_key"))


class ErasureError(RuntimeError):
    """The person cannot be erased as asked; the message says why (never their values)."""


@dataclass
class Person:
    customer_ids: list[str]
    record_keys: list[str]  # "<source>:<source_key>"
    emails: set[str]  # normalised
    phones_e164: set[str]
    national_numbers: set[str]
    keys: dict[str, set[str]]  # identifier namespace -> source keys
    raw_values: set[str] = field(default_factory=set)  # exactly as written in the sources (for text scrubbing)

    def identifiers(self, key: str) -> list[Identifier]:
        return suppression.identifiers_for(
            key, emails=self.emails, national_numbers=self.national_numbers, keys=self.keys
        )

    def text_patterns(self) -> re.Pattern[bytes]:
        """Every written form of their email and phone, longest first (bytes, emails case-insensitive)."""
        values = {v for v in self.raw_values | self.emails | self.phones_e164 if v and len(v) >= 6}
        escaped = [re.escape(v.encode("utf-8")) for v in sorted(values, key=len, reverse=True)]
        return re.compile(b"|".join(escaped) if escaped else rb"(?!x)x", re.IGNORECASE)


@dataclass
class ErasureReport:
    request_id: str
    customer_ids: list[str]
    rows_deleted: dict[str, int] = field(default_factory=dict)  # table -> rows
    snapshot_published: str | None = None
    snapshots_removed: list[str] = field(default_factory=list)
    exports_regenerated: int = 0
    files_scrubbed: dict[str, int] = field(default_factory=dict)  # path -> replacements
    files_removed: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    remaining: list[str] = field(default_factory=list)  # files still holding a value: must be empty

    @property
    def complete(self) -> bool:
        return not self.remaining


def _table_exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?", [schema, table]
        ).fetchall()[0][0]
    )


def find_person(
    con: duckdb.DuckDBPyConnection,
    *,
    email: str | None = None,
    phone: str | None = None,
    customer_id: str | None = None,
    allow_several: bool = False,
) -> Person:
    """The person's customer ids, records and identifiers, through identity resolution."""
    from crm.identity.normalise import normalise_phone

    wanted_email = suppression.normalise_email(email) if email else None
    wanted_phone = normalise_phone(phone) if phone else None
    if phone and wanted_phone is None:
        raise ErasureError("the phone number given is not a possible phone number")
    customer_ids: list[str] = []
    records: list[tuple] = []
    if _table_exists(con, "identity", "records"):
        if customer_id:
            customer_ids = [customer_id]
        else:
            customer_ids = [
                r[0]
                for r in con.execute(
                    "SELECT DISTINCT customer_id FROM identity.records WHERE customer_id IS NOT NULL AND "
                    "(lower(trim(email)) = ? OR phone_e164 = ?) ORDER BY 1",
                    [wanted_email, wanted_phone],
                ).fetchall()
            ]
        if len(customer_ids) > 1 and not allow_several:
            raise ErasureError(
                f"the {'email' if email else 'phone'} given belongs to {len(customer_ids)} customers "
                f"({', '.join(customer_ids[:10])}): a shared address is no proof of one person. Erase each "
                "customer with --customer-id after checking, or pass --all-matching."
            )
        records = con.execute(
            "SELECT source, source_key, email, phone_e164 FROM identity.records WHERE list_contains(?, customer_id)",
            [customer_ids],
        ).fetchall()
    if customer_id and not records:
        raise ErasureError(f"no customer {customer_id} in identity.records")
    emails = {suppression.normalise_email(r[2]) for r in records if r[2]} | ({wanted_email} if wanted_email else set())
    phones = {r[3] for r in records if r[3]} | ({wanted_phone} if wanted_phone else set())
    keys: dict[str, set[str]] = {"sales_contacts": set(), "support_tickets": set(), "sales_orders": set()}
    for source, source_key, _, _ in records:
        if source in keys and source_key is not None:
            keys[source].add(str(source_key))
    if keys["sales_contacts"] and _table_exists(con, "raw", "sales_orders"):
        keys["sales_orders"] = {
            str(r[0])
            for r in con.execute(
                "SELECT DISTINCT order_id FROM raw.sales_orders "
                "WHERE list_contains(?, trim(CAST(customer_ref AS VARCHAR)))",
                [sorted(keys["sales_contacts"])],
            ).fetchall()
        }
    national = {n for n in (suppression.national_number(p) for p in phones) if n}
    if not emails and not national and not customer_ids:
        raise ErasureError("nobody matches: no record with that email or phone (nothing erased, nothing recorded)")
    return Person(
        customer_ids=customer_ids,
        record_keys=sorted(f"{s}:{k}" for s, k, _, _ in records),
        emails=emails,
        phones_e164=phones,
        national_numbers=national,
        keys={k: v for k, v in keys.items() if v},
    )


# --- the warehouse ------------------------------------------------------------------------------


def _columns(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> dict[str, str]:
    return dict(
        con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
            "ORDER BY ordinal_position",
            [schema, table],
        ).fetchall()
    )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _collect_raw_values(con, table: str, predicate: str, columns: list[str]) -> set[str]:
    if not columns:
        return set()
    union = " UNION ".join(f"SELECT CAST({_q(c)} AS VARCHAR) FROM {table} WHERE {predicate}" for c in columns)
    return {r[0] for r in con.execute(union).fetchall() if r[0]}


def value_predicate(columns: dict[str, str], person: Person) -> tuple[str, list]:
    """SQL true for a row of any table that names the person, with its parameters."""
    text = [c for c, t in columns.items() if re.fullmatch(r"(VARCHAR|TEXT|STRING)(\(\d+\))?", t.upper())]
    parts: list[str] = []
    params: list = []
    exact = sorted(set(person.customer_ids) | set(person.record_keys) | person.emails | person.phones_e164)
    for column in text:
        parts.append(f"list_contains(?, {_q(column)})")
        params.append(exact)
        for email in sorted(person.emails):
            parts.append(f"contains(lower({_q(column)}), ?)")
            params.append(email)
        # Digits inside any text would also hit long numeric ids: only where a phone can be.
        if _PHONE_COLUMN.search(column):
            for number in sorted(person.national_numbers):
                if len(number) >= 8:
                    parts.append(f"contains(regexp_replace({_q(column)}, '[^0-9]', '', 'g'), ?)")
                    params.append(number)
    for source_column, key_column in RECORD_COLUMN_PAIRS:
        if source_column in columns and key_column in columns:
            parts.append(
                f"list_contains(?, CAST({_q(source_column)} AS VARCHAR) || ':' || CAST({_q(key_column)} AS VARCHAR))"
            )
            params.append(person.record_keys or [""])
    if not parts:
        return "false", []
    return " OR ".join(f"coalesce({p}, false)" for p in parts), params


def _delete_counted(con, table: str, predicate: str, params: list) -> int:
    return con.execute(f"DELETE FROM {table} WHERE {predicate}", params).fetchall()[0][0]


def erase_in_warehouse(con: duckdb.DuckDBPyConnection, person: Person, key: str) -> dict[str, int]:
    """Delete the person's rows from every table (one transaction); returns rows per table."""
    from crm.ingest.ledger import ensure_ledger

    identifiers = person.identifiers(key)
    suppression.load_into(con, key, identifiers)
    ensure_ledger(con)  # an older warehouse gains the rows_suppressed column
    con.execute("BEGIN TRANSACTION")
    try:
        deleted = _erase_source_rows(con, person, identifiers)
        deleted |= _erase_derived_rows(con, person)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return deleted


def _erase_source_rows(con, person: Person, identifiers: list[Identifier]) -> dict[str, int]:
    """raw and quarantine (the original record included), with the ledger's counts moved to suppressed."""
    deleted = {}
    for entity in ENTITIES.values():
        for schema in ("raw", "quarantine"):
            if not _table_exists(con, schema, entity.name):
                continue
            table = f"{schema}.{entity.name}"
            if schema == "raw":
                columns = {c: _q(c) for c in entity.column_names}
                predicate = suppression.column_predicate(entity.name, columns, identifiers)
                person_columns = suppression.PERSON_COLUMNS.get(entity.name, ())
                contact = [c for _, c in person_columns if "email" in c or "phone" in c]
            else:
                predicate = suppression.quarantine_predicate(entity.name, identifiers)
                contact = []
            if predicate is None:
                continue
            person.raw_values |= _collect_raw_values(con, table, predicate, contact)
            per_day = con.execute(f"SELECT _partition_date, count(*) FROM {table} WHERE {predicate} GROUP BY ALL")
            per_day = per_day.fetchall()
            rows = _delete_counted(con, table, predicate, [])
            if not rows:
                continue
            deleted[table] = rows
            counted = "rows_loaded" if schema == "raw" else "rows_quarantined"
            con.executemany(
                f"UPDATE ops.ingest_partition_counts SET {counted} = {counted} - ?, "
                "rows_suppressed = coalesce(rows_suppressed, 0) + ? "
                "WHERE entity = ? AND partition_date = ?",
                [(n, n, entity.name, day) for day, n in per_day],
            )
    return deleted


def _erase_derived_rows(con, person: Person) -> dict[str, int]:
    """Every other table (identity, intermediate, marts, ml, seeds) naming the person."""
    deleted = {}
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
        "AND table_schema NOT IN ('raw', 'quarantine') AND table_catalog = current_database() ORDER BY 1, 2"
    ).fetchall()
    for schema, name in tables:
        if schema == "ops" and name in LEDGER_TABLES:
            continue
        predicate, params = person_predicate(_columns(con, schema, name), person)
        rows = _delete_counted(con, f"{_q(schema)}.{_q(name)}", predicate, params)
        if rows:
            deleted[f"{schema}.{name}"] = rows
    return deleted


def person_predicate(columns: dict[str, str], person: Person) -> tuple[str, list]:
    """:func:`value_predicate`, plus the customer id for a table that has one."""
    predicate, params = value_predicate(columns, person)
    if "customer_id" in columns and person.customer_ids:
        return f"list_contains(?, CAST(customer_id AS VARCHAR)) OR ({predicate})", [person.customer_ids, *params]
    return predicate, params


def rewrite_database(path: Path, connect=None) -> None:
    """Copy every table and view into a new file and swap it in: deleted values left in DuckDB's free
    blocks go with the old file. ``connect`` opens the file the way its owner does."""
    fresh = path.with_name(f".{path.name}.rewrite")
    fresh.unlink(missing_ok=True)
    con = connect(path) if connect else duckdb.connect(str(path))
    try:
        source = con.execute("SELECT current_database()").fetchall()[0][0]
        con.execute(f"ATTACH '{fresh}' AS crm_rewrite")
        con.execute(f"COPY FROM DATABASE {_q(source)} TO crm_rewrite")
        con.execute("DETACH crm_rewrite")
    finally:
        con.close()
    mode = path.stat().st_mode & 0o777
    os.chmod(fresh, mode)
    os.replace(fresh, path)
    path.with_name(path.name + ".wal").unlink(missing_ok=True)


# --- files under the data folder ----------------------------------------------------------------

_SQLITE = b"SQLite format 3\x00"


def _kind(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head.startswith(_SQLITE):
        return "sqlite"
    if head[8:12] == b"DUCK":
        return "duckdb"
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    return "bytes"


def scrub_text_file(path: Path, pattern: re.Pattern[bytes]) -> int:
    """Replace every match with [erased] in place (atomic, mode kept); returns replacements."""
    payload = path.read_bytes()
    cleaned, replaced = pattern.subn(ERASED.encode(), payload)
    if replaced:
        temporary = path.with_name(f".{path.name}.scrub")
        temporary.write_bytes(cleaned)
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    return replaced


def scrub_sqlite(path: Path, values: list[str]) -> int:
    """Dagster's run and event storage: replace the values in every text column, then VACUUM the file."""
    replaced = 0
    con = sqlite3.connect(path)
    try:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            columns = [r[1] for r in con.execute(f"PRAGMA table_info({_q(table)})")]
            for column in columns:
                for value in values:
                    for variant in {value, value.lower(), value.upper()}:
                        cursor = con.execute(
                            f"UPDATE {_q(table)} SET {_q(column)} = replace({_q(column)}, ?, ?) "
                            f"WHERE typeof({_q(column)}) = 'text' AND instr({_q(column)}, ?) > 0",
                            [variant, ERASED, variant],
                        )
                        replaced += cursor.rowcount
                    # Case variants beyond the three above (Mixed.Case@...) through a case-insensitive match.
                    rows = con.execute(
                        f"SELECT rowid, {_q(column)} FROM {_q(table)} WHERE typeof({_q(column)}) = 'text' "
                        f"AND instr(lower({_q(column)}), lower(?)) > 0",
                        [value],
                    ).fetchall()
                    for rowid, text in rows:
                        con.execute(
                            f"UPDATE {_q(table)} SET {_q(column)} = ? WHERE rowid = ?",
                            [re.sub(re.escape(value), ERASED, text, flags=re.IGNORECASE), rowid],
                        )
                        replaced += 1
        con.commit()
        if replaced:
            con.execute("VACUUM")
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    return replaced


def duckdb_holds(path: Path, person: Person) -> list[str]:
    """Tables of a DuckDB file that still name the person (opened read-only)."""
    found = []
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'"
        ).fetchall()
        for schema, name in tables:
            predicate, params = person_predicate(_columns(con, schema, name), person)
            if con.execute(f"SELECT count(*) FROM {_q(schema)}.{_q(name)} WHERE {predicate}", params).fetchall()[0][0]:
                found.append(f"{schema}.{name}")
    return found


def file_holds(path: Path, pattern: re.Pattern[bytes], person: Person | None = None) -> str | None:
    """Why ``path`` still holds one of the values (None when it does not): raw bytes, or the decoded
    contents of a compressed format a byte search cannot see into."""
    try:
        kind = _kind(path)
        if pattern.search(path.read_bytes()):
            return "bytes"
        if kind == "zip":
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    if pattern.search(archive.read(member)):
                        return f"zip member {member}"
        elif kind == "parquet":
            import pyarrow.parquet as pq

            table = pq.read_table(path)
            for column in table.column_names:
                text = "\n".join(str(v) for v in table[column].to_pylist() if v is not None).encode()
                if pattern.search(text):
                    return f"parquet column {column}"
        elif kind == "duckdb" and person is not None:
            tables = duckdb_holds(path, person)
            if tables:
                return "tables " + ", ".join(tables[:5])
    except (OSError, zipfile.BadZipFile, duckdb.Error) as exc:
        return f"could not be read ({type(exc).__name__})"
    return None


def files_holding(
    data_dir: Path, pattern: re.Pattern[bytes], person: Person | None = None, excluded: list[Path] = ()
) -> list[str]:
    """Files under ``data_dir`` (but not under ``excluded``) that still hold a value, and how."""
    found = []
    excluded = list(excluded)
    for path in sorted(Path(data_dir).rglob("*")):
        if path.is_file() and not path.is_symlink() and _outside(path, excluded):
            why = file_holds(path, pattern, person)
            if why:
                found.append(f"{path} ({why})")
    return found


# --- the whole request -------------------------------------------------------------------------


def _scrubbed_bookkeeping(snapshot_path: Path, pattern: re.Pattern[bytes]):
    from crm.serving.snapshots import CheckResult, RunRecord

    def clean(text):
        return None if text is None else pattern.sub(ERASED.encode(), text.encode()).decode()

    with duckdb.connect(str(snapshot_path), read_only=True) as con:
        checks = [
            CheckResult(a, n, p, s, clean(d), clean(m) or "{}", e)
            for a, n, p, s, d, m, e in con.execute(
                "SELECT asset_key, check_name, passed, severity, description, metadata_json, evaluated_at "
                "FROM ops.asset_check_results"
            ).fetchall()
        ]
        runs = [RunRecord(*r) for r in con.execute("SELECT * FROM ops.recent_runs").fetchall()]
    return checks, runs


def _drop_steward_decisions(data_dir: Path, person: Person) -> int:
    from crm.identity.steward import decisions_path

    path = decisions_path(data_dir)
    if not path.exists():
        return 0
    import json

    keep, dropped = [], 0
    erased = set(person.record_keys)
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        decision = json.loads(line)
        if {
            f"{decision['left_source']}:{decision['left_key']}",
            f"{decision['right_source']}:{decision['right_key']}",
        } & erased:
            dropped += 1
        else:
            keep.append(line)
    if dropped:
        temporary = path.with_name(f".{path.name}.scrub")
        temporary.write_text("".join(f"{line}\n" for line in keep), encoding="utf-8")
        os.chmod(temporary, path.stat().st_mode & 0o777)
        os.replace(temporary, path)
    return dropped


def erase_person(
    settings,
    *,
    email: str | None = None,
    phone: str | None = None,
    customer_id: str | None = None,
    reason: str = "",
    actor: str = "crm erase",
    allow_several: bool = False,
) -> ErasureReport:
    """Erase one person everywhere under the data folder; see the module docstring for the steps."""
    from crm import warehouse as warehouse_module

    if sum(v is not None for v in (email, phone, customer_id)) != 1:
        raise ErasureError("give exactly one of --email, --phone or --customer-id")
    data_dir = Path(settings.data_dir)
    warehouse = Path(settings.warehouse_path)
    if not warehouse.exists():
        raise ErasureError(f"no warehouse at {warehouse}: nothing to erase from (run `crm build` first)")
    request_id = f"erasure-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    key = suppression.erasure_key(data_dir, create=True)
    try:
        con = settings.connect_warehouse()
    except duckdb.IOException as exc:
        raise ErasureError(f"the warehouse {warehouse} is in use (a build running?): try again after it") from exc
    try:
        person = find_person(con, email=email, phone=phone, customer_id=customer_id, allow_several=allow_several)
        identifiers = person.identifiers(key)
        request = {"request_id": request_id, "at": datetime.now(UTC).isoformat(timespec="seconds")}
        suppression.record_request(data_dir, {**request, "customers": len(person.customer_ids)}, identifiers)
        report = ErasureReport(request_id=request_id, customer_ids=person.customer_ids)
        report.rows_deleted = erase_in_warehouse(con, person, key)
    finally:
        con.close()
    report.warnings += [
        f"{table} named the person: also edit its seed file in dbt_project/seeds/"
        for table in report.rows_deleted
        if table.startswith("seeds.")
    ]
    memory = settings.warehouse_memory_limit
    rewrite_database(warehouse, connect=lambda path: warehouse_module.connect(path, memory_limit=memory))
    _republish(data_dir, warehouse, person, report)
    sources = source_locations(settings)
    _scrub_files(data_dir, warehouse, person, report, sources)
    report.warnings += [
        f"the source {path} is the company's own system (kept under the data folder): "
        "it may still hold the person, erase them there too"
        for path in sources
        if data_dir.resolve() in path.parents
    ]
    audit.record(
        data_dir,
        actor=actor,
        role="operator",
        action="erase",
        target=request_id,
        details={
            "reason": person.text_patterns().sub(ERASED.encode(), reason.encode()).decode(),
            "customers": len(person.customer_ids),
            "identifiers_suppressed": len(identifiers),
            "rows_deleted": report.rows_deleted,
            "snapshot_published": report.snapshot_published,
            "snapshots_removed": report.snapshots_removed,
            "exports_regenerated": report.exports_regenerated,
            "files_scrubbed": len(report.files_scrubbed),
        },
    )
    pattern = person.text_patterns()
    report.remaining = files_holding(data_dir, pattern, person, excluded=sources)
    if data_dir not in warehouse.parents and (why := file_holds(warehouse, pattern, person)):
        report.remaining.append(f"{warehouse} ({why})")
    return report


def _republish(data_dir: Path, warehouse: Path, person: Person, report: ErasureReport) -> None:
    """A new snapshot from the cleaned warehouse; older snapshots still holding the person go; every
    saved segment is exported again."""
    from crm.serving.segments import export_saved_segments
    from crm.serving.snapshots import SnapshotError, current_snapshot, list_snapshots, publish_snapshot, snapshots_dir

    try:
        current = current_snapshot(data_dir)
    except SnapshotError as exc:
        report.warnings.append(str(exc))
        current = None
    if current is None:
        return
    pattern = person.text_patterns()
    checks, runs = _scrubbed_bookkeeping(current.path, pattern)
    run_id = report.request_id.rsplit("-", 1)[-1] + "-erasure"
    published = publish_snapshot(warehouse, data_dir, run_id=run_id, checks=checks, runs=runs)
    report.snapshot_published = published.snapshot_id
    for snapshot in list_snapshots(data_dir):
        if snapshot.snapshot_id == published.snapshot_id:
            continue
        if duckdb_holds(snapshot.path, person) or file_holds(snapshot.path, pattern):
            snapshot.path.chmod(0o600)
            snapshot.path.unlink()
            snapshot.path.with_suffix(".json").unlink(missing_ok=True)
            report.snapshots_removed.append(snapshot.snapshot_id)
    for stray in snapshots_dir(data_dir).glob(".*.partial*"):
        stray.unlink()
    _, manifests, failures = export_saved_segments(data_dir)
    report.exports_regenerated = len(manifests)
    report.warnings += [f"segment export failed: {f}" for f in failures]


def source_locations(settings) -> list[Path]:
    """Where the company's own systems are read from (the demo keeps them under the data folder):
    erasure never writes there; the company erases the person in those systems itself."""
    from crm.settings import FileDropSource, PagedExportSource, SqlSource

    found = []
    for source in settings.sources.values():
        if isinstance(source, FileDropSource | PagedExportSource):
            found.append(Path(source.path).resolve())
        elif isinstance(source, SqlSource) and source.url.startswith("sqlite:///"):
            found.append(Path(source.url[len("sqlite:///") :]).resolve())
    if getattr(settings, "ground_truth_dir", None):
        found.append(Path(settings.ground_truth_dir).resolve())
    return found


def _outside(path: Path, excluded: list[Path]) -> bool:
    resolved = path.resolve()
    return not any(resolved == e or e in resolved.parents for e in excluded)


def _scrub_files(data_dir: Path, warehouse: Path, person: Person, report: ErasureReport, excluded: list[Path]) -> None:
    """Dagster's SQLite storage, logs, JSON and every other file under the data folder (never the sources)."""
    from crm.serving.segments import exports_dir
    from crm.serving.snapshots import list_snapshots

    dropped = _drop_steward_decisions(data_dir, person)
    if dropped:
        report.files_scrubbed["steward/decisions.jsonl (decisions dropped)"] = dropped
    pattern = person.text_patterns()
    values = sorted({v for v in person.raw_values | person.emails | person.phones_e164 if v and len(v) >= 6})
    kept = {warehouse} | {s.path for s in list_snapshots(data_dir)}
    for path in sorted(data_dir.rglob("*")):
        if not path.is_file() or path.is_symlink() or path in kept or not _outside(path, excluded):
            continue
        kind = _kind(path)
        replaced = 0
        if kind == "sqlite":
            replaced = scrub_sqlite(path, values)
        elif kind == "bytes":
            replaced = scrub_text_file(path, pattern)
        elif exports_dir(data_dir) in path.parents and file_holds(path, pattern, person):
            path.unlink()
            report.files_removed.append(str(path.relative_to(data_dir)))
        if replaced:
            report.files_scrubbed[str(path.relative_to(data_dir))] = replaced
