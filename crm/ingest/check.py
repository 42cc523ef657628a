"""`crm check`: a dry run of ingestion that probes every configured source and writes no warehouse.

Each entity goes through the same readers and row rules as a build, into a scratch DuckDB file
under the data folder that is removed afterwards, so what `crm check` predicts is what the build
will do: rows and date range per entity, the columns mapped, unmapped and missing, a sample of
the rows that would be quarantined with their reasons, rows outside the history, files nobody
reads, and what the pipeline will and will not be able to compute. Every error names the source,
the file or table, and what to change in the config. The Great Expectations contract is left to
the build (the row rules already hold every row to the same contract).
"""

from __future__ import annotations

import codecs
import csv
import io
import tempfile
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import orjson
import sqlalchemy as sa

from crm import warehouse
from crm.coverage import coverage
from crm.ingest.entities import ENTITIES, Entity
from crm.ingest.file_reader import list_drop_files, unread_files
from crm.ingest.formats import detect_delimiter, unique_header
from crm.ingest.history import history_start
from crm.ingest.readers import IngestError
from crm.ingest.service import ingest_entity
from crm.ingest.sql_reader import open_source_engine
from crm.settings import FileDropSource, PagedExportSource, Settings, SqlSource

# Rough cost of a whole first build on the 2-core reference machine (docs/benchmarks.md, "History
# length and the orders-only company"): a fixed cost (Dagster, three dbt invocations, models), then
# source rows per second; and the warehouse's size: a fixed part, then bytes per source row.
BUILD_FIXED_SECONDS = 80.0
BUILD_ROWS_PER_SECOND = 40_000.0
WAREHOUSE_FIXED_MB = 10.0
WAREHOUSE_BYTES_PER_ROW = 200


@dataclass
class EntityCheck:
    entity: str
    source: str
    status: str = "ok"  # ok | warning | error
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_outside_history: int = 0
    first_day: date | None = None
    last_day: date | None = None
    columns_mapped: dict[str, str] = field(default_factory=dict)
    columns_unmapped: list[str] = field(default_factory=list)
    required_missing: list[str] = field(default_factory=list)
    optional_missing: list[str] = field(default_factory=list)
    quarantine_sample: list[dict] = field(default_factory=list)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class CheckReport:
    config: str
    history_start: date | None
    entities: list[EntityCheck]
    unconfigured: list[str]
    unread_files: list[str]
    coverage: list[dict]
    estimate: dict

    @property
    def ok(self) -> bool:
        """False when the build would fail or leave rows unread."""
        return not any(e.status == "error" for e in self.entities) and not self.unread_files

    def as_dict(self) -> dict:
        return {
            "config": self.config,
            "ok": self.ok,
            "history_start": self.history_start,
            "entities": [e.__dict__ for e in self.entities],
            "unconfigured_entities": self.unconfigured,
            "unread_files": self.unread_files,
            "coverage": self.coverage,
            "estimate": self.estimate,
        }


def check_sources(settings: Settings, *, sample: int = 5) -> CheckReport:
    """Probe every configured entity the way a build would read it, without touching the warehouse."""
    scratch_root = settings.data_dir / "tmp"
    scratch_root.mkdir(parents=True, exist_ok=True)
    checks: list[EntityCheck] = []
    with tempfile.TemporaryDirectory(prefix="check-", dir=scratch_root) as scratch:
        con = warehouse.connect(Path(scratch) / "check.duckdb", memory_limit=settings.warehouse_memory_limit)
        try:
            for entity_name in ENTITIES:
                for located in settings.sources_of(entity_name):
                    checks.append(_check_entity(con, settings, entity_name, located, sample))
        finally:
            con.close()
    unread = []
    for source_name, source in settings.sources.items():
        if isinstance(source, FileDropSource) and source.path.is_dir():
            unread += [f"source '{source_name}': {relative}" for relative in unread_files(source)]
    present = {c.entity for c in checks if c.rows_loaded > 0}
    rows = sum(c.rows_read for c in checks)
    return CheckReport(
        config=str(settings.config_path),
        history_start=history_start(settings),
        entities=checks,
        unconfigured=[e for e in ENTITIES if not settings.sources_of(e)],
        unread_files=unread,
        coverage=coverage(present),
        estimate={
            "source_rows": rows,
            "warehouse_mb": round(WAREHOUSE_FIXED_MB + rows * WAREHOUSE_BYTES_PER_ROW / 1e6, 1),
            "first_build_minutes": round((BUILD_FIXED_SECONDS + rows / BUILD_ROWS_PER_SECOND) / 60, 1),
            "note": "rough, from the measured throughput of the 2-core reference machine (docs/benchmarks.md)",
        },
    )


def _check_entity(con, settings: Settings, entity_name: str, located, sample: int) -> EntityCheck:
    source_name, source, mapping = located
    entity = ENTITIES[entity_name]
    check = EntityCheck(entity_name, source_name)
    try:
        available = available_columns(source_name, source, mapping)
    except (OSError, IngestError, sa.exc.SQLAlchemyError) as exc:
        available = None
        check.warnings.append(f"columns could not be listed: {exc}")
    if available is not None:
        _columns(check, entity, mapping, available)
    try:
        report = ingest_entity(con, settings, entity_name, run_id="crm-check", validate=False, only_source=source_name)
    except IngestError as exc:
        refused = getattr(exc, "report", None)
        check.status, check.errors = "error", [str(exc)]
        if refused is None:
            return check
        report = refused
    check.rows_read, check.rows_loaded = report.rows_read, report.rows_loaded
    check.rows_quarantined, check.rows_outside_history = report.rows_quarantined, report.rows_outside
    check.quarantine_reasons = report.quarantine_reasons
    check.warnings += sorted(set(report.drift_warnings) | set(report.warnings))
    if report.status != "refused":
        first, last = con.execute(
            f"SELECT min(_partition_date), max(_partition_date) FROM raw.{entity_name} WHERE _source_system = $s",
            {"s": source_name},
        ).fetchall()[0]
        check.first_day, check.last_day = first, last
    check.quarantine_sample = report.quarantine_sample[:sample]
    if check.required_missing and check.status != "error":
        check.status = "error"
    if check.status != "error" and (check.warnings or check.rows_quarantined or check.rows_outside_history):
        check.status = "warning"
    return check


def _columns(check: EntityCheck, entity: Entity, mapping, available: list[str]) -> None:
    present = set(available)
    renamed = {old: new for new, old in mapping.renames.items() if new in present}
    for canonical, wanted in mapping.columns.items():
        found = wanted if wanted in present or wanted.split(".")[0] in present else renamed.get(wanted)
        if found:
            check.columns_mapped[canonical] = found
        elif entity.column(canonical).required:
            check.required_missing.append(f"{canonical} (mapped to '{wanted}', not in the source)")
        else:
            check.optional_missing.append(f"{canonical} (mapped to '{wanted}', not in the source)")
    known = set(mapping.columns.values()) | set(mapping.renames) | set(mapping.ignore_columns)
    known |= {name.split(".", 1)[0] for name in known}
    check.columns_unmapped = sorted(present - known)


def available_columns(source_name: str, source, mapping) -> list[str] | None:
    """The columns the source offers for this entity (newest file's header, table columns, a page's fields)."""
    if isinstance(source, SqlSource):
        engine = open_source_engine(source_name, source)
        try:
            with engine.connect() as conn:
                inspector = sa.inspect(conn)
                if not mapping.table or not inspector.has_table(mapping.table):
                    return None
                return [c["name"] for c in inspector.get_columns(mapping.table)]
        finally:
            engine.dispose()
    if isinstance(source, FileDropSource):
        listing = list_drop_files(source, mapping) if source.path.is_dir() else None
        if listing is None:
            return None
        newest = listing.single or (listing.dated[-1][0] if listing.dated else None)
        if newest is None:
            return None
        with newest.open("rb") as handle:
            first = handle.readline()
        text = first.decode(codecs.lookup(source.encoding).name, errors="replace").lstrip("\ufeff").rstrip("\r\n")
        delimiter, _ = detect_delimiter(text, source.delimiter)
        names = next(csv.reader(io.StringIO(text), delimiter=delimiter), [])
        return unique_header(names)[0]
    if isinstance(source, PagedExportSource):
        first = source.path / f"{source.first_cursor}.jsonl"
        if not first.exists():
            return None
        keys: set[str] = set()
        for line in first.read_bytes().split(b"\n")[1:50]:
            try:
                record = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(record, dict):
                keys.update(_flat(record))
        return sorted(keys)
    return None


def _flat(record: dict, prefix: str = ""):
    for key, value in record.items():
        yield prefix + key
        if isinstance(value, dict):
            yield from _flat(value, prefix + key + ".")


def exit_code(report: CheckReport) -> int:
    return 0 if report.ok else 1
