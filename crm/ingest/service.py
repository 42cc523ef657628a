"""Load one entity: read what is new (or an explicit window), check it, and replace it in one transaction.

Plain Python over a DuckDB connection, so tests, benchmarks and `crm check` call it without
Dagster; the Dagster asset (pipelines/defs/ingest) is a thin wrapper that reports the checks.

What a run reads comes from the ledger, not from a calendar of partitions (docs/sources.md, "How a
build reads"): new or changed files, SQL rows from the watermark's day on, export pages after the
stored cursor. ``window`` re-reads and replaces those days instead. Either way the run's rows go
through the row rules and the blocking checks *before* anything is written: a batch whose books
do not balance, whose share of bad rows is over the limit, or that breaks the Great Expectations
contract is refused, so nothing a check refuses ever reaches raw.

A batch is read and checked in slices staged as Parquet (``_StagedBatch``; docs/sources.md,
"Slices"), then written in one transaction, so a window of any length costs memory for one slice.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from crm.ingest.entities import ENTITIES, EXTERNAL_IDS, Column, Entity
from crm.ingest.file_reader import read_file_drop
from crm.ingest.history import history_start
from crm.ingest.ledger import (
    GROUPED_REASON_SQL,
    create_reconciliation_view,
    ensure_ledger,
    record_batch,
    source_state,
)
from crm.ingest.page_reader import read_paged_export
from crm.ingest.readers import (
    BATCH_TABLE,
    REJECTS_TABLE,
    IngestError,
    ReadRequest,
    ReadResult,
    Scope,
    SourceEmptyError,
    SourceUnavailableError,
    Window,
    create_batch_tables,
)
from crm.ingest.sql_reader import read_sql
from crm.ingest.validate import RowFormats, ensure_entity_tables, stage_slice
from crm.security.suppression import book_suppressed_rows, suppress_batch
from crm.settings import (
    EntityMapping,
    FileDropSource,
    PagedExportSource,
    QualitySettings,
    Settings,
    Source,
    SqlSource,
    date_formats,
    decimal_mark,
    is_optional,
)

# The locations of the batch's rows that no day could place (see _StagedBatch and _delete_scope).
UNDATED_TABLE = "_ingest_undated"


class IngestRefusedError(IngestError):
    """A blocking check refused the batch before it was committed; the warehouse is unchanged."""

    def __init__(self, message: str, report: IngestReport) -> None:
        super().__init__(message)
        self.report = report


class OutsideHistoryError(IngestError):
    """A source holds rows, but none of them lies in the history the config asks for."""


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    message: str
    details: dict = field(default_factory=dict)


@dataclass
class IngestReport:
    entity: str
    source: str | None
    batch_id: str
    mode: str  # incremental | window
    status: str  # loaded | nothing new | not configured | absent (optional source) | refused
    window: Window | None  # the days replaced (None: none)
    rows_read: int = 0
    rows_parsed: int = 0  # rows the readers handed to validation (parsed rows + unparseable lines)
    rows_loaded: int = 0
    rows_quarantined: int = 0
    rows_suppressed: int = 0  # rows of persons erased with `crm erase`, dropped before raw/quarantine
    rows_replaced: int = 0
    rows_outside: int = 0
    outside_first: date | None = None
    outside_last: date | None = None
    files_read: int = 0
    drift_warnings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)
    # A few quarantined rows of this batch (where, reason, the record as read), for `crm check`.
    quarantine_sample: list[dict] = field(default_factory=list)
    checks: list[CheckOutcome] = field(default_factory=list)

    @property
    def reconciled(self) -> bool:
        return self.rows_read == self.rows_parsed == self.rows_loaded + self.rows_quarantined + self.rows_suppressed

    @property
    def quarantine_share(self) -> float:
        total = self.rows_loaded + self.rows_quarantined
        return self.rows_quarantined / total if total else 0.0


def _now() -> str:
    return datetime.now(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="seconds")


def ingest_entity(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    entity_name: str,
    window: Window | None = None,
    *,
    run_id: str = "manual",
    validate: bool = True,
    today: date | None = None,
    only_source: str | None = None,
) -> IngestReport:
    """Load ``entity_name``: what is new since the ledger's cursor, or (``window``) re-read those days.

    Each source feeding the entity (usually one; two shops may feed one entity) is read and committed
    as a batch of its own, in one transaction: a failure (a schema change, an unreachable source, a
    refused batch) leaves that source's rows exactly as the last good run left them. ``only_source``
    reads one of them (what `crm check` probes).
    """
    entity = ENTITIES[entity_name]
    con.execute("SET TimeZone = 'UTC'")
    ensure_ledger(con)
    located = [s for s in settings.sources_of(entity_name) if only_source in (None, s[0])]
    _ensure_tables_naming_systems(con, entity, located)
    if not located:
        report = IngestReport(entity_name, None, _batch_id(entity_name, window), _mode(window), "not configured", None)
        staged = _StagedBatch(con, entity, entity, None, None, report.batch_id, _now(), RowFormats(), settings)
        try:
            return _commit_batch(con, report, ReadResult(), staged, run_id, entity, settings, False)
        finally:
            staged.cleanup()
    state_keys = {name: ledger_state_key(settings, entity_name, name) for name, _, _ in located}
    reports = [
        _ingest_source(con, settings, entity, located_source, window, run_id, validate, today, state_keys)
        for located_source in located
    ]
    return reports[0] if len(reports) == 1 else _combined(reports)


def ledger_state_key(settings: Settings, entity_name: str, source_name: str) -> str:
    """The name of a source's cursor in ops.source_state: the entity, or ``<entity>@<source>`` when
    several sources feed it (each keeps its own watermark, export cursor and config fingerprint)."""
    return entity_name if len(settings.sources_of(entity_name)) <= 1 else f"{entity_name}@{source_name}"


def _batch_id(entity_name: str, window: Window | None) -> str:
    return f"{entity_name}:{_mode(window)}:{uuid.uuid4().hex[:12]}"


def _mode(window: Window | None) -> str:
    return "incremental" if window is None else "window"


def _ingest_source(
    con: duckdb.DuckDBPyConnection,
    settings: Settings,
    entity: Entity,
    located: tuple[str, Source, EntityMapping],
    window: Window | None,
    run_id: str,
    validate: bool,
    today: date | None,
    state_keys: dict[str, str],
) -> IngestReport:
    """Read one source of the entity and commit (or refuse) it as one batch."""
    source_name, source, mapping = located
    state_key = state_keys[source_name]
    mode = _mode(window)
    started_at = _now()
    report = IngestReport(entity.name, source_name, _batch_id(entity.name, window), mode, "loaded", None)
    state = source_state(con, state_key)
    config_sha = _config_fingerprint(source, mapping, settings.history_start)
    notes = []
    if window is None and state.config_sha is not None and state.config_sha != config_sha:
        # The mapping or a declared format changed since the last load: what was read (or refused)
        # under the old config is read again under the new one.
        window, mode = Window(None, None), "window"
        report.mode = mode
        notes.append("the entity's config changed since the last load: every row of the source is read again")
    formats = RowFormats(
        date_formats=date_formats(source, mapping),
        decimal=decimal_mark(source, mapping),
        where=f"entity '{entity.name}', source '{source_name}'",
        placement_column=_placement_column(source, mapping),
        placement_hint=(
            "the database compares updated_at as text, and only ISO-8601 text (YYYY-MM-DD hh:mm:ss) sorts by "
            "time; correct the value in the source, or map a timestamp column as updated_at"
            if isinstance(source, SqlSource)
            else f"it is not a date (declare `date_format` on entity '{entity.name}' if it is written otherwise)"
        ),
    )
    # Each declared external id is read as a column of its own (drift checks and lineage work as
    # for any column) and folded into `external_ids` afterwards.
    reading_entity, reading_mapping = _with_id_columns(entity, mapping)
    staged = _StagedBatch(
        con, entity, reading_entity, mapping, source_name, report.batch_id, started_at, formats, settings
    )
    request = ReadRequest(
        window=window,
        history_start=history_start(settings),
        state=state,
        today=today,
        scratch_dir=settings.data_dir / "tmp",
        end_slice=staged.end_slice,
    )
    try:
        try:
            read = _read(con, source_name, source, reading_entity, reading_mapping, request)
        except SourceUnavailableError as exc:
            if not is_optional(source, mapping):
                raise
            # Whatever was staged before the source went away is dropped: the batch records the absence.
            report.status = "absent"
            read = ReadResult(warnings=[f"{exc} (optional: the step goes on without it)"])
            staged.discard()
            return _commit_batch(con, report, read, staged, run_id, entity, settings, False, state_key=state_key)
        staged.end_slice()
        _check_not_empty(con, source_name, source, entity, mapping, read, request)
        if read.rows_read == 0 and not read.scope.sources and read.scope.days is None:
            report.status = "nothing new"
        read.notes[:0] = notes
        return _commit_batch(
            con, report, read, staged, run_id, entity, settings, validate, config_sha, state_key=state_key
        )
    finally:
        staged.cleanup()


class _StagedBatch:
    """One source's batch, staged slice by slice as Parquet before anything reaches the warehouse.

    A reader hands over its batch tables whenever they hold a slice's worth (``ReadRequest.slice_done``:
    a group of files, a range of SQL rows, a group of export pages). Each slice gets its external
    ids folded and its source system named, loses the rows of erased persons, goes through the row
    rules, and is written to two Parquet files under the data folder's scratch space (rows for raw,
    rows for quarantine with the reason); the batch tables are then emptied. So a window of any
    length costs one slice of memory, and the work is linear in the rows read.

    Why Parquet and not the slices inserted in one open transaction: DuckDB keeps a temp table that
    is replaced or emptied inside a transaction until the transaction ends (a rollback could need
    it), so per-slice temp tables in one transaction grow with the window; emptied outside any
    transaction they are freed at once. The staged files are inserted by ``_commit_batch`` in the
    batch's one transaction, after the blocking checks passed on the whole batch: a failure in any
    slice, or a refusal, leaves raw and quarantine as the last good run left them. A killed build
    leaves the files under ``<data_dir>/tmp``, which the next build clears.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        entity: Entity,
        reading_entity: Entity,
        mapping: EntityMapping | None,
        source_name: str | None,
        batch_id: str,
        started_at: str,
        formats: RowFormats,
        settings: Settings,
    ) -> None:
        self.con, self.entity, self.reading_entity, self.mapping = con, entity, reading_entity, mapping
        self.source_name, self.batch_id, self.started_at = source_name, batch_id, started_at
        self.formats, self.settings = formats, settings
        scratch = settings.data_dir / "tmp"
        scratch.mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix=f"ingest-{entity.name}-", dir=scratch))
        self.raw_files: list[str] = []
        self.quarantine_files: list[str] = []
        self.slices = 0
        self.parsed = self.loaded = self.quarantined = self.suppressed = 0
        # Where the batch read rows it could not place in a day: such a row loaded before is
        # replaced where it is read again (see _delete_scope). Few rows, kept for the whole batch.
        con.execute(f"CREATE OR REPLACE TEMP TABLE {UNDATED_TABLE} (_source_location VARCHAR)")
        create_batch_tables(con, reading_entity)

    def end_slice(self) -> None:
        """Stage what the batch tables hold and empty them (nothing to do when they are empty)."""
        con = self.con
        parsed = con.execute(
            f"SELECT (SELECT count(*) FROM {BATCH_TABLE}) + (SELECT count(*) FROM {REJECTS_TABLE})"
        ).fetchall()[0][0]
        if not parsed:
            return
        _fold_external_ids(con, self.mapping)
        _tag_source_system(con, self.source_name)
        self.parsed += parsed
        # Erased persons stay erased: their rows are dropped here and counted as suppressed in the ledger.
        suppressed = suppress_batch(
            con,
            self.entity.name,
            self.settings.data_dir,
            BATCH_TABLE,
            REJECTS_TABLE,
            self.entity.column_names,
            later_slice=self.slices > 0,
        )
        self.suppressed += sum(suppressed.values())
        con.execute(
            f"INSERT INTO {UNDATED_TABLE} SELECT _source_location FROM {BATCH_TABLE} WHERE _partition_date IS NULL "
            f"UNION ALL SELECT _source_location FROM {REJECTS_TABLE} WHERE _partition_date IS NULL"
        )
        raw_path = str(self.folder / f"raw_{self.slices:05d}.parquet")
        quarantine_path = str(self.folder / f"quarantine_{self.slices:05d}.parquet")
        loaded, quarantined = stage_slice(
            con, self.entity, self.batch_id, self.started_at, raw_path, quarantine_path, self.formats
        )
        self.loaded, self.quarantined = self.loaded + loaded, self.quarantined + quarantined
        if loaded:
            self.raw_files.append(raw_path)
        if quarantined:
            self.quarantine_files.append(quarantine_path)
        self.slices += 1
        create_batch_tables(con, self.reading_entity)

    def discard(self) -> None:
        """Forget every staged slice (the source went away mid-read): the batch holds no rows."""
        self.cleanup()
        self.folder.mkdir(parents=True)
        self.raw_files, self.quarantine_files = [], []
        self.slices = self.parsed = self.loaded = self.quarantined = self.suppressed = 0
        self.con.execute(f"DELETE FROM {UNDATED_TABLE}")
        create_batch_tables(self.con, self.reading_entity)

    def scan(self, kind: str) -> str | None:
        """SQL reading the staged rows for raw or quarantine (None: there are none)."""
        files = self.raw_files if kind == "raw" else self.quarantine_files
        if not files:
            return None
        return "read_parquet([" + ", ".join(_sql_text(f) for f in files) + "])"

    def cleanup(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _combined(reports: list[IngestReport]) -> IngestReport:
    """One report for an entity fed by several sources: counts added up, messages gathered."""
    first = reports[0]
    statuses = {r.status for r in reports}
    combined = IngestReport(
        first.entity,
        ", ".join(r.source or "" for r in reports),
        first.batch_id,
        first.mode if len({r.mode for r in reports}) == 1 else "mixed",
        "loaded" if "loaded" in statuses else first.status,
        None,
    )
    for name in (
        "rows_read",
        "rows_parsed",
        "rows_loaded",
        "rows_quarantined",
        "rows_suppressed",
        "rows_replaced",
        "rows_outside",
        "files_read",
    ):
        setattr(combined, name, sum(getattr(r, name) for r in reports))
    for name in ("drift_warnings", "warnings", "notes", "quarantine_sample"):
        setattr(combined, name, [item for r in reports for item in getattr(r, name)])
    for r in reports:
        for reason, rows in r.quarantine_reasons.items():
            combined.quarantine_reasons[reason] = combined.quarantine_reasons.get(reason, 0) + rows
    firsts = [r.outside_first for r in reports if r.outside_first]
    lasts = [r.outside_last for r in reports if r.outside_last]
    combined.outside_first, combined.outside_last = min(firsts, default=None), max(lasts, default=None)
    # A check passed for the entity only if it passed for every source's batch.
    checks: dict[str, CheckOutcome] = {}
    for r in reports:
        for check in r.checks:
            seen = checks.get(check.name)
            message = f"source '{r.source}': {check.message}"
            if seen is None:
                checks[check.name] = CheckOutcome(
                    check.name, check.passed, check.blocking, message, {r.source: check.details}
                )
            else:
                seen.passed = seen.passed and check.passed
                seen.message += "; " + message
                seen.details[r.source] = check.details
    combined.checks = list(checks.values())
    return combined


def _ensure_tables_naming_systems(
    con: duckdb.DuckDBPyConnection, entity: Entity, located: list[tuple[str, Source, EntityMapping]]
) -> None:
    """The entity's tables; rows loaded before `_source_system` existed are given their (only) source's name."""
    had_system = con.execute(
        "SELECT count(*) FROM information_schema.columns "
        "WHERE table_schema = 'raw' AND table_name = $t AND column_name = '_source_system'",
        {"t": entity.name},
    ).fetchall()[0][0]
    ensure_entity_tables(con, entity)
    if not had_system and len(located) == 1:
        for schema in ("raw", "quarantine"):
            con.execute(
                f"UPDATE {schema}.{entity.name} SET _source_system = $s WHERE _source_system IS NULL",
                {"s": located[0][0]},
            )


def _tag_source_system(con: duckdb.DuckDBPyConnection, source_name: str | None) -> None:
    """Every row of the batch keeps the config's name of the system it came from (`_source_system`)."""
    default = _sql_text(source_name) if source_name is not None else "NULL"
    for table in (BATCH_TABLE, REJECTS_TABLE):
        con.execute(f"ALTER TABLE {table} ADD COLUMN _source_system VARCHAR DEFAULT {default}")


def _id_column(kind: str) -> str:
    return f"__id_{kind}"


def _with_id_columns(entity: Entity, mapping: EntityMapping) -> tuple[Entity, EntityMapping]:
    """The entity and mapping as the readers see them: each declared external id is read as a column
    of its own (so drift checks and lineage work as for any column), folded afterwards."""
    if not mapping.ids:
        return entity, mapping
    extra = tuple(Column(_id_column(kind), "VARCHAR") for kind in mapping.ids)
    columns = {**mapping.columns, **{_id_column(kind): column for kind, column in mapping.ids.items()}}
    return dataclasses.replace(entity, columns=entity.columns + extra), mapping.model_copy(update={"columns": columns})


def _fold_external_ids(con: duckdb.DuckDBPyConnection, mapping: EntityMapping) -> None:
    """The id columns as one JSON object per row in `external_ids` ({"loyalty_card": "123"}); empty ids left out."""
    if not mapping.ids:
        return
    entries = ", ".join(
        f"struct_pack(k := {_sql_text(kind)}, v := nullif(trim(\"{_id_column(kind)}\"), ''))" for kind in mapping.ids
    )
    con.execute(
        f"UPDATE {BATCH_TABLE} SET {EXTERNAL_IDS} = nullif(CAST(to_json(map_from_entries("
        f"list_filter([{entries}], lambda e: e.v IS NOT NULL))) AS VARCHAR), '{{}}')"
    )
    for kind in mapping.ids:
        con.execute(f'ALTER TABLE {BATCH_TABLE} DROP COLUMN "{_id_column(kind)}"')


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _config_fingerprint(source, mapping, first_day) -> str:
    """What of the config decides which rows are read and how: the mapping, the source's formats and the
    history's start (not the source's location)."""
    import hashlib
    import json

    described = {
        "mapping": mapping.model_dump(mode="json", exclude={"optional", "freshness"}),
        "source": source.model_dump(
            mode="json", exclude={"entities", "path", "url", "optional", "ignore_files", "freshness"}
        ),
        "history_start": str(first_day),
    }
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def _read(con, source_name, source, entity: Entity, mapping, request: ReadRequest) -> ReadResult:
    if isinstance(source, SqlSource):
        return read_sql(con, source_name, source, entity, mapping, request)
    if isinstance(source, FileDropSource):
        return read_file_drop(con, source_name, source, entity, mapping, request)
    if isinstance(source, PagedExportSource):
        return read_paged_export(con, source_name, source, entity, mapping, request)
    raise TypeError(f"unknown source kind {type(source).__name__}")


def _placement_column(source, mapping) -> str | None:
    """The column whose value places a row in the history, when it is a column (not a file's day)."""
    if isinstance(source, SqlSource):
        return "updated_at"
    if isinstance(source, FileDropSource) and mapping.single_file:
        return mapping.date_column
    return None


def _check_not_empty(con, source_name, source, entity: Entity, mapping, read: ReadResult, request) -> None:
    """A configured source that holds nothing, or nothing in the history, is an error (a warning when
    the config says it may be empty): never a green build that quietly loaded nothing."""
    optional = is_optional(source, mapping)
    where = f"source '{source_name}', entity '{entity.name}'"
    ever_loaded = con.execute(
        f"SELECT (SELECT count(*) FROM raw.{entity.name} WHERE {read.scope.source_filter}) + "
        f"(SELECT count(*) FROM quarantine.{entity.name} WHERE {read.scope.source_filter})"
    ).fetchall()[0][0]
    # A drop folder emptied after earlier loads (files archived once read) is not an empty source.
    if read.source_rows == 0 and read.rows_read == 0 and read.rows_outside == 0 and not ever_loaded:
        message = (
            f"{where}: the source holds no rows at all (no file matches the pattern, an empty table or file); "
            "check `path:`/`pattern:`/`table:`, or mark it `optional: true` if it may be empty"
        )
        if not optional:
            raise SourceEmptyError(message)
        read.warnings.append(message + " (optional: nothing loaded)")
    if read.rows_outside:
        span = f"{read.outside_first}..{read.outside_last}"
        message = (
            f"{where}: {read.rows_outside:,} row(s) dated {span} lie before history_start "
            f"{request.history_start} and were not loaded"
        )
        if read.rows_read == 0 and not ever_loaded:
            raise OutsideHistoryError(
                f"{message}, and none lies in the history ({request.history_start} on): set `history_start: auto` "
                f"(load everything the source holds) or a day on or before {read.outside_first}"
            )
        read.warnings.append(message + f" (set history_start on or before {read.outside_first} to load them)")


def _delete_scope(con: duckdb.DuckDBPyConnection, entity: Entity, scope: Scope | None) -> tuple[int, list[date]]:
    """Delete what this batch replaces from raw and quarantine; (rows deleted, days they were on)."""
    if scope is None:
        return 0, []
    parts = [
        # Undated rows (nothing placed them in a day) are replaced where they are read again.
        f"(_partition_date IS NULL AND _source_location IN (SELECT _source_location FROM {UNDATED_TABLE}))"
    ]
    params: dict = {}
    if scope.days is not None and scope.replace_days:
        parts.append(
            "(_partition_date BETWEEN coalesce($start, DATE '0001-01-01') AND coalesce($end, DATE '9999-12-31'))"
        )
        params.update(start=scope.days.start, end=scope.days.end)
    if scope.sources:
        parts.append("_source IN (SELECT unnest($sources))")
        params["sources"] = scope.sources
    condition = f"({scope.source_filter}) AND ({' OR '.join(parts)})"
    days: set[date] = set()
    deleted = 0
    for schema in ("raw", "quarantine"):
        days.update(
            d
            for (d,) in con.execute(
                f"SELECT DISTINCT _partition_date FROM {schema}.{entity.name} WHERE {condition} "
                "AND _partition_date IS NOT NULL",
                params,
            ).fetchall()
        )
        deleted += con.execute(f"DELETE FROM {schema}.{entity.name} WHERE {condition}", params).fetchall()[0][0]
    return deleted, sorted(days)


def _commit_batch(
    con: duckdb.DuckDBPyConnection,
    report: IngestReport,
    read: ReadResult,
    staged: _StagedBatch,
    run_id: str,
    entity: Entity,
    settings: Settings,
    validate: bool,
    config_sha: str | None = None,
    *,
    state_key: str | None = None,
) -> IngestReport:
    """Run the blocking checks on the whole staged batch; then, in one transaction, replace the
    batch's scope with the staged rows, write the ledger and commit (or roll back on any error)."""
    report.rows_parsed = staged.parsed
    report.rows_suppressed = staged.suppressed
    report.rows_loaded, report.rows_quarantined = staged.loaded, staged.quarantined
    report.rows_read = read.rows_read
    report.rows_outside, report.outside_first, report.outside_last = (
        read.rows_outside,
        read.outside_first,
        read.outside_last,
    )
    report.files_read = len(read.files)
    report.drift_warnings, report.warnings = list(read.drift_warnings), list(read.warnings)
    report.notes = list(read.notes)
    report.window = read.scope.days if read.scope else None
    raw_rows, quarantine_rows = staged.scan("raw"), staged.scan("quarantine")
    if quarantine_rows:
        report.quarantine_reasons = dict(
            con.execute(
                f"SELECT {GROUPED_REASON_SQL} AS reason, count(*) FROM {quarantine_rows} "
                "GROUP BY reason ORDER BY 2 DESC, 1 LIMIT 20"
            ).fetchall()
        )
        report.quarantine_sample = [
            {"where": where, "reason": reason, "record": record}
            for where, reason, record in con.execute(
                f"SELECT _source_location, _reason, _raw_record FROM {quarantine_rows} "
                "ORDER BY length(_source_location), _source_location LIMIT 5"
            ).fetchall()
        ]
    # The checks see the whole batch before anything is written: what they refuse never reaches raw.
    report.checks = _blocking_checks(con, entity, report, settings.quality, validate, raw_rows)
    refused = [c for c in report.checks if c.blocking and not c.passed]
    if refused:
        report.status = "refused"
        raise IngestRefusedError(
            f"entity '{entity.name}' (source '{report.source}'): the batch was refused and nothing was "
            "committed; the last good tables are unchanged: " + "; ".join(f"{c.name}: {c.message}" for c in refused),
            report,
        )
    staged_days = " UNION ".join(
        f"SELECT DISTINCT _partition_date FROM {rows}" for rows in (raw_rows, quarantine_rows) if rows
    )
    new_days = (
        [d for (d,) in con.execute(f"SELECT * FROM ({staged_days}) WHERE _partition_date IS NOT NULL").fetchall()]
        if staged_days
        else []
    )
    con.execute("BEGIN TRANSACTION")
    try:
        report.rows_replaced, replaced_days = _delete_scope(con, entity, read.scope)
        _insert_staged(con, f"raw.{entity.name}", staged.raw_files, report.rows_loaded)
        _insert_staged(con, f"quarantine.{entity.name}", staged.quarantine_files, report.rows_quarantined)
        record_batch(
            con,
            entity=entity.name,
            source=report.source or "",
            batch_id=report.batch_id,
            run_id=run_id,
            mode=report.mode,
            status=report.status,
            read=read,
            loaded=report.rows_loaded,
            quarantined=report.rows_quarantined,
            replaced=report.rows_replaced,
            suppressed=report.rows_suppressed,
            days_touched=sorted(set(new_days) | set(replaced_days)),
            started_at=staged.started_at,
            finished_at=_now(),
            config_sha=config_sha,
            state_key=state_key,
        )
        if report.rows_suppressed:
            book_suppressed_rows(con, entity.name, report.batch_id)
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return report


def _insert_staged(con: duckdb.DuckDBPyConnection, table: str, files: list[str], expected: int) -> None:
    """Insert a batch's staged rows into ``table``, one slice's file at a time (one statement over
    all files holds more in memory the longer the window). A count that differs from what was
    staged is an error and the transaction rolls back: the books were checked on the staged counts."""
    inserted = 0
    for path in files:
        inserted += con.execute(
            f"INSERT INTO {table} BY NAME SELECT * FROM read_parquet({_sql_text(path)})"
        ).fetchall()[0][0]
    if inserted != expected:
        raise IngestError(f"{table}: {inserted:,} rows inserted where {expected:,} were staged; nothing was committed")


def _blocking_checks(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    report: IngestReport,
    quality: QualitySettings,
    validate: bool,
    raw_rows: str | None = None,
) -> list[CheckOutcome]:
    """The checks that decide whether the batch may commit (and those that only report)."""
    checks = [
        CheckOutcome(
            "rows_reconciled",
            report.reconciled,
            True,
            f"rows read {report.rows_read:,}, handed to the rules {report.rows_parsed:,}, loaded "
            f"{report.rows_loaded:,} + quarantined {report.rows_quarantined:,}"
            + (f" + suppressed (erased persons) {report.rows_suppressed:,}" if report.rows_suppressed else ""),
            {"rows_read": report.rows_read, "rows_parsed": report.rows_parsed},
        ),
        CheckOutcome(
            "quarantine_share_within_limit",
            report.quarantine_share <= quality.max_quarantine_share or report.rows_read < quality.min_rows_for_share,
            True,
            f"{report.quarantine_share:.2%} of the batch's rows quarantined (limit "
            f"{quality.max_quarantine_share:.2%}, quality.max_quarantine_share); top reasons: "
            + "; ".join(f"{reason} ({rows})" for reason, rows in list(report.quarantine_reasons.items())[:3])
            + (
                f"; for example {report.quarantine_sample[0]['where']}: {report.quarantine_sample[0]['reason']}"
                if report.quarantine_sample
                else ""
            ),
            {"quarantine_share": round(report.quarantine_share, 5), "reasons": report.quarantine_reasons},
        ),
    ]
    if validate and report.rows_loaded and raw_rows:
        from crm.ingest.expectations import MAX_VALIDATED_ROWS, validate_frame

        # The suite runs on the whole batch, or on a seeded sample of it when it is larger than
        # MAX_VALIDATED_ROWS: the row rules already checked every row (the suite guards those rules),
        # and a sample keeps the frame, and the step's memory, bounded whatever the window.
        sample = (
            f" USING SAMPLE reservoir({MAX_VALIDATED_ROWS} ROWS) REPEATABLE (0)"
            if report.rows_loaded > MAX_VALIDATED_ROWS
            else ""
        )
        frame = con.execute(f"SELECT * EXCLUDE (_batch_id, _source, _ingested_at) FROM {raw_rows}{sample}").df()
        outcomes = validate_frame(entity, frame)
        for severity, name in (("critical", "great_expectations_contract"), ("warning", "great_expectations_warnings")):
            chosen = [o for o in outcomes if (o.severity == "critical") == (severity == "critical")]
            failing = [o for o in chosen if not o.success]
            checks.append(
                CheckOutcome(
                    name,
                    not failing,
                    severity == "critical",
                    "; ".join(
                        f"{o.expectation}({o.column or ''}): {o.unexpected_count} unexpected, e.g. {o.examples}"
                        for o in failing
                    )
                    or f"{len(chosen)} expectations met on {len(frame):,} rows"
                    + (f" (a seeded sample of the batch's {report.rows_loaded:,})" if sample else ""),
                    {
                        f"{o.expectation}({o.column or ''})": {
                            "success": o.success,
                            "unexpected": o.unexpected_count,
                            "examples": o.examples,
                        }
                        for o in chosen
                    },
                )
            )
    return checks


def refresh_reconciliation(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Make sure every entity's tables and the ledger exist, refresh ``ops.ingest_reconciliation`` and
    return its rows (what `crm audit` prints): rows read = rows in raw + rows in quarantine."""
    ensure_ledger(con)
    for entity in ENTITIES.values():
        ensure_entity_tables(con, entity)
    create_reconciliation_view(con)
    return (
        con.sql(
            "SELECT entity, rows_read, rows_in_raw, rows_in_quarantine, reconciled, rows_outside_history "
            "FROM ops.ingest_reconciliation"
        )
        .pl()
        .to_dicts()
    )
