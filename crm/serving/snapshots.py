"""Published snapshots: read-only copies of what the app serves, which the app and the exports read.

DuckDB has one writer per file, and the nightly build holds it for minutes. Readers therefore
never open the build warehouse: after a successful build the tables the app serves
(:data:`SERVED_TABLES`, nothing else: no raw, no quarantine, no staging) are copied into a new
file ``<data_dir>/snapshots/<snapshot_id>.duckdb``, the copy gets the run's bookkeeping (check
results, recent runs, a manifest, quarantine reasons without the records) in schema ``ops``, and
only then does the pointer file ``CURRENT.json`` move to it (temp file + ``os.replace``, atomic on
POSIX). A reader that follows the pointer sees either the previous whole build or the new whole
build, never half of one. Snapshots are readable by the service's user only (0400 in a 0700
folder): they hold every customer's contact details.

Plain Python (no Dagster), so the app and the tests use the same code as the asset.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from crm.ingest.ledger import quarantine_reasons_sql, quarantine_samples_sql
from crm.security.redaction import mask_contact_details, redact_secrets
from crm.serving.aggregates import write_aggregates
from crm.serving.search import write_customer_search
from crm.warehouse import connect as connect_warehouse

POINTER_NAME = "CURRENT.json"
KEEP_SNAPSHOTS = 3
# What the app serves, and so everything a snapshot holds: schema -> its tables (None: every table).
# A page that reads a new table adds it here; raw, quarantine, staging and intermediate never go in.
SERVED_TABLES: dict[str, tuple[str, ...] | None] = {
    "marts": (
        "customer_360",
        "customers",
        "customer_rfm",
        "customer_rfm_history",
        "customer_scores",
        "orders",
        "marketing_events",
        "support_tickets",
        "campaign_performance",
        "cohort_retention",
        "rep_actions",
        "rep_performance",
    ),
    # The model card, calibration, drivers and drift; the scores themselves are served by marts.
    "ml": ("model_registry", "churn_calibration", "churn_drivers", "score_drift", "scoring_notes"),
    # steward_decisions: which of the dashboard's steward decisions the build behind a snapshot applied.
    "identity": ("records", "customer_id_changes", "suspected_duplicates", "guarded_values", "steward_decisions"),
    "ops": ("ingest_reconciliation", "source_coverage"),
}
# Built inside the snapshot while it is published, from the served tables (or the run's bookkeeping),
# never copied from the warehouse: with SERVED_TABLES, everything a snapshot may hold.
BUILT_IN_SNAPSHOT: dict[str, tuple[str, ...]] = {
    "serving": (
        "order_kpis",
        "monthly_activity",
        "tickets_by_month",
        "conversion_by_segment",
        "identity_summary",
        "identity_cluster_sizes",
        "identity_largest_clusters",
        "customer_search",
    ),
    "ops": (
        "asset_check_results",
        "recent_runs",
        "snapshot_manifest",
        "freshness_expectations",
        "quarantine_reasons",
        "quarantine_samples",
    ),
}
# Columns of served tables that no page reads: left out (a copy of every event's email address is
# personal data the dashboard does not need, and a third of the events' size).
LEFT_OUT_COLUMNS: dict[str, tuple[str, ...]] = {"marts.marketing_events": ("email",)}
# Quarantined rows per (entity, reason) a snapshot points at (Data health's examples).
QUARANTINE_SAMPLES_PER_REASON = 5
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Schemas whose tables the manifest counts: what the app shows.
COUNTED_SCHEMAS = ("marts", "ml")
# The app looks one customer (or one rep) up in these; an index turns a scan of millions of rows
# into a point lookup. Built in the snapshot only: the build warehouse never pays for them.
LOOKUP_INDEXES = {
    "marts.customer_360": "customer_id",
    "marts.customers": "customer_id",
    "marts.customer_rfm": "customer_id",
    "marts.customer_scores": "customer_id",
    "marts.rep_actions": "rep_id",
}
# Many rows per customer: copied into the snapshot sorted by customer, so each row group's min/max
# (DuckDB's zone maps) skips all but the customer's own rows: a point lookup without an index that
# would cost as much space as the table.
SORTED_BY_CUSTOMER = ("marts.orders", "marts.marketing_events", "marts.support_tickets", "identity.records")


class SnapshotError(RuntimeError):
    """A snapshot cannot be published or read; the message names the file."""


@dataclass(frozen=True)
class CheckResult:
    asset_key: str
    check_name: str
    passed: bool
    severity: str
    description: str | None
    metadata_json: str
    evaluated_at: datetime


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    job_name: str
    status: str
    started_at: datetime | None
    ended_at: datetime | None


@dataclass(frozen=True)
class Snapshot:
    """One published snapshot as the pointer names it."""

    snapshot_id: str
    path: Path
    built_at: datetime
    run_id: str
    row_counts: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> str:
        data = asdict(self)
        # The file name only: the snapshots folder can move (a copied data dir keeps working).
        data["path"] = self.path.name
        data["built_at"] = self.built_at.isoformat()
        return json.dumps(data, indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, source: Path) -> Snapshot:
        """Read a pointer or manifest; the snapshot file sits in the same folder as ``source``."""
        try:
            data = json.loads(text)
            return cls(
                snapshot_id=data["snapshot_id"],
                path=source.parent / Path(data["path"]).name,
                built_at=datetime.fromisoformat(data["built_at"]),
                run_id=data["run_id"],
                row_counts={k: int(v) for k, v in data.get("row_counts", {}).items()},
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise SnapshotError(f"{source}: not a snapshot pointer ({exc})") from exc


def snapshots_dir(data_dir: Path) -> Path:
    return Path(data_dir) / "snapshots"


def current_snapshot(data_dir: Path) -> Snapshot | None:
    """The snapshot the pointer names, or None when nothing was published yet."""
    pointer = snapshots_dir(data_dir) / POINTER_NAME
    try:
        text = pointer.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    snapshot = Snapshot.from_json(text, pointer)
    if not snapshot.path.exists():
        raise SnapshotError(f"{pointer} names {snapshot.path}, which does not exist")
    return snapshot


def new_snapshot_id(built_at: datetime, run_id: str) -> str:
    """Sortable by time; the run id keeps two builds in the same second apart."""
    return f"{built_at.strftime('%Y%m%dT%H%M%S')}Z-{run_id[:8]}"


def is_served(schema: str, table: str) -> bool:
    tables = SERVED_TABLES.get(schema, ())
    return tables is None or table in tables


def _copy_served_tables(warehouse: Path, target: Path) -> None:
    """Copy the served tables (views materialised) into a new file, plus the quarantine reasons.

    A new file rather than a copy of the warehouse: it holds nothing the app does not serve, is a
    fraction of the size, and carries none of the values DuckDB leaves in a file's free blocks.
    """
    if not warehouse.exists():
        raise SnapshotError(f"no warehouse to publish at {warehouse}")
    with connect_warehouse(warehouse) as con:
        listed = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_catalog = current_database() ORDER BY 1, 2"
        ).fetchall()
        served = [(schema, table) for schema, table in listed if is_served(schema, table)]
        columns = con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE table_catalog = current_database()"
        ).fetchall()
        quarantined = sorted(table for schema, table in listed if schema == "quarantine")
        con.execute(f"ATTACH '{target}' AS snapshot_target")
        try:
            for schema in sorted({schema for schema, _ in served} | {"ops"}):
                con.execute(f'CREATE SCHEMA IF NOT EXISTS snapshot_target."{schema}"')
            for schema, table in served:
                order = " ORDER BY customer_id" if f"{schema}.{table}" in SORTED_BY_CUSTOMER else ""
                present = {c for s, t, c in columns if (s, t) == (schema, table)}
                left_out = [c for c in LEFT_OUT_COLUMNS.get(f"{schema}.{table}", ()) if c in present]
                select = "*" + (f" EXCLUDE ({', '.join(left_out)})" if left_out else "")
                con.execute(
                    f'CREATE TABLE snapshot_target."{schema}"."{table}" AS '
                    f'SELECT {select} FROM "{schema}"."{table}"{order}'
                )
            # Data health groups quarantined rows by reason; the reasons travel, the records do not. A few
            # rows of each reason travel as pointers (file:line or table:key, field, the reason with a
            # person's value replaced), so a person with access to the source can look.
            con.execute(f"CREATE TABLE snapshot_target.ops.quarantine_reasons AS {quarantine_reasons_sql(quarantined)}")
            table_columns: dict[str, set[str]] = {}
            for s, t, c in columns:
                table_columns.setdefault(f"{s}.{t}", set()).add(c)
            located = [
                t for t in quarantined if {"_source_location", "_reason"} <= table_columns.get(f"quarantine.{t}", set())
            ]
            pointers = quarantine_samples_sql(table_columns, located) if located else ""
            samples = (
                f"SELECT entity, location, field, reason, grouped FROM ({pointers}) "
                f"WHERE sample <= {QUARANTINE_SAMPLES_PER_REASON}"
                if located
                else "SELECT NULL::VARCHAR AS entity, NULL::VARCHAR AS location, NULL::VARCHAR AS field, "
                "NULL::VARCHAR AS reason, NULL::VARCHAR AS grouped WHERE false"
            )
            con.execute(f"CREATE TABLE snapshot_target.ops.quarantine_samples AS {samples}")
        finally:
            con.execute("DETACH snapshot_target")


def _row_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = con.execute(
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_type = 'BASE TABLE' AND table_schema IN (SELECT unnest(?)) ORDER BY 1, 2",
        [list(COUNTED_SCHEMAS)],
    ).fetchall()
    return {
        f"{schema}.{name}": con.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchall()[0][0]
        for schema, name in tables
    }


def _safe(text: str | None) -> str | None:
    """What a snapshot may record about a run: no secrets, no email addresses."""
    return mask_contact_details(redact_secrets(text)) if text else text


def _write_ops_tables(
    con: duckdb.DuckDBPyConnection, snapshot: Snapshot, checks: Sequence[CheckResult], runs: Sequence[RunRecord]
) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute("""
        CREATE OR REPLACE TABLE ops.asset_check_results (
            asset_key VARCHAR, check_name VARCHAR, passed BOOLEAN, severity VARCHAR,
            description VARCHAR, metadata_json VARCHAR, evaluated_at TIMESTAMPTZ)""")
    if checks:
        con.executemany(
            "INSERT INTO ops.asset_check_results VALUES (?, ?, ?, ?, ?, ?, ?)",
            [
                (
                    c.asset_key,
                    c.check_name,
                    c.passed,
                    c.severity,
                    _safe(c.description),
                    _safe(c.metadata_json),
                    c.evaluated_at,
                )
                for c in checks
            ],
        )
    con.execute("""
        CREATE OR REPLACE TABLE ops.recent_runs (
            run_id VARCHAR, job_name VARCHAR, status VARCHAR, started_at TIMESTAMPTZ, ended_at TIMESTAMPTZ)""")
    if runs:
        con.executemany(
            "INSERT INTO ops.recent_runs VALUES (?, ?, ?, ?, ?)",
            [(r.run_id, r.job_name, r.status, r.started_at, r.ended_at) for r in runs],
        )
    con.execute("""
        CREATE OR REPLACE TABLE ops.snapshot_manifest (
            snapshot_id VARCHAR, built_at TIMESTAMPTZ, run_id VARCHAR, table_name VARCHAR, row_count BIGINT)""")
    if snapshot.row_counts:  # a warehouse with no marts yet (a first build that stopped early) has none
        con.executemany(
            "INSERT INTO ops.snapshot_manifest VALUES (?, ?, ?, ?, ?)",
            [
                (snapshot.snapshot_id, snapshot.built_at, snapshot.run_id, table, count)
                for table, count in snapshot.row_counts.items()
            ],
        )


def _write_freshness_expectations(
    con: duckdb.DuckDBPyConnection, expectations: Iterable[tuple[str, str, int | None, int | None]]
) -> None:
    """The config's freshness expectation per source entity (Settings.freshness_expectations): the
    dashboard never reads the config, so the snapshot carries them."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute(
        "CREATE OR REPLACE TABLE ops.freshness_expectations "
        "(source VARCHAR, entity VARCHAR, warn_after_days INTEGER, error_after_days INTEGER)"
    )
    rows = list(expectations)
    if rows:
        con.executemany("INSERT INTO ops.freshness_expectations VALUES (?, ?, ?, ?)", rows)


def _add_serving_structures(con: duckdb.DuckDBPyConnection) -> None:
    """What makes the app fast: indexes for point lookups, the dashboard aggregates, and the search
    table over every identifier of every source record (crm/serving/search.py; the data layer
    searches emails and phones only for a viewer who may see them)."""
    write_aggregates(con)
    present = {
        r[0]
        for r in con.execute(
            "SELECT table_schema || '.' || table_name || '.' || column_name FROM information_schema.columns"
        ).fetchall()
    }
    for table, column in LOOKUP_INDEXES.items():
        if f"{table}.{column}" in present:
            schema, name = table.split(".")
            con.execute(f'CREATE INDEX IF NOT EXISTS "{name}_{column}_lookup" ON "{schema}"."{name}" ("{column}")')
    write_customer_search(con)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` readable by the owner only, through a temporary file (atomic on POSIX)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def _write_pointer(directory: Path, snapshot: Snapshot) -> None:
    _write_private(directory / POINTER_NAME, snapshot.to_json())


def _prune(directory: Path, keep: int, current: Snapshot) -> list[Path]:
    """Delete all but the newest ``keep`` snapshots (never the current one). Open readers keep
    reading a deleted file until they close it (POSIX), so pruning never breaks a live page."""
    published = sorted(directory.glob("*.duckdb"), key=lambda p: p.stem, reverse=True)
    removed = []
    for path in published[keep:]:
        if path == current.path:
            continue
        path.chmod(stat.S_IWUSR | stat.S_IRUSR)
        path.unlink()
        path.with_suffix(".json").unlink(missing_ok=True)
        removed.append(path)
    return removed


def publish_snapshot(
    warehouse: Path,
    data_dir: Path,
    *,
    run_id: str,
    checks: Iterable[CheckResult] = (),
    runs: Iterable[RunRecord] = (),
    built_at: datetime | None = None,
    keep: int = KEEP_SNAPSHOTS,
    freshness: Iterable[tuple[str, str, int | None, int | None]] = (),
) -> Snapshot:
    """Copy the warehouse into a new snapshot, add the run's bookkeeping, then move the pointer.

    Refuses when a check of severity ERROR failed: a build that did not pass its blocking checks
    must not become what people see. Any error before the pointer moves leaves the previous
    snapshot current; the half-written file is removed.
    """
    checks, runs = list(checks), list(runs)
    failed = [f"{c.asset_key} / {c.check_name}" for c in checks if not c.passed and c.severity == "ERROR"]
    if failed:
        raise SnapshotError(
            f"not publishing run {run_id}: {len(failed)} check(s) of severity ERROR failed: "
            + ", ".join(sorted(failed)[:10])
        )
    built_at = built_at or datetime.now(UTC)
    directory = snapshots_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    directory.chmod(PRIVATE_DIR_MODE)
    snapshot_id = new_snapshot_id(built_at, run_id)
    target = directory / f"{snapshot_id}.duckdb"
    partial = directory / f".{snapshot_id}.duckdb.partial"
    try:
        partial.unlink(missing_ok=True)
        _copy_served_tables(Path(warehouse), partial)
        with duckdb.connect(str(partial)) as con:
            counts = _row_counts(con)
            snapshot = Snapshot(
                snapshot_id=snapshot_id, path=target, built_at=built_at, run_id=run_id, row_counts=counts
            )
            _write_ops_tables(con, snapshot, checks, runs)
            _write_freshness_expectations(con, freshness)
            _add_serving_structures(con)
            con.execute("CHECKPOINT")
        partial.chmod(stat.S_IRUSR)
        os.replace(partial, target)
        _write_private(target.with_suffix(".json"), snapshot.to_json())
    except BaseException:
        partial.unlink(missing_ok=True)
        partial.with_name(partial.name + ".wal").unlink(missing_ok=True)
        raise
    _write_pointer(directory, snapshot)
    _prune(directory, keep, snapshot)
    return snapshot


def list_snapshots(data_dir: Path) -> list[Snapshot]:
    """Every snapshot still on disk, newest first (the migration page compares two of them)."""
    directory = snapshots_dir(data_dir)
    found = []
    for manifest in sorted(directory.glob("*.json"), reverse=True):
        if manifest.name == POINTER_NAME:
            continue
        snapshot = Snapshot.from_json(manifest.read_text(encoding="utf-8"), manifest)
        if snapshot.path.exists():
            found.append(snapshot)
    return found
