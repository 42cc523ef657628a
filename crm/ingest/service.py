"""Load one entity: read what is new (or an explicit window), check it, and replace it in one transaction.

Plain Python over a DuckDB connection, so tests, benchmarks and `crm check` call it without
Dagster; the Dagster asset (pipelines/defs/ingest) is a thin wrapper that reports the checks.

What a run reads comes from the ledger, not from a calendar of partitions (docs/sources.md, "How a
build reads"): new or changed files, SQL rows from the watermark's day on, export pages after the
stored cursor. ``window`` re-reads and replaces those days instead. Either way the run's rows go
through the row rules and the blocking checks *before* the transaction commits: a batch whose
books do not balance, whose share of bad rows is over the limit, or that breaks the Great
Expectations contract is rolled back, so nothing a check refuses ever reaches raw.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb

from crm.ingest.entities import ENTITIES, Entity
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
from crm.ingest.validate import RowFormats, ensure_entity_tables, split_batch
from crm.settings import (
    FileDropSource,
    PagedExportSource,
    QualitySettings,
    Settings,
    SqlSource,
    date_formats,
    decimal_mark,
    is_optional,
)


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
        return self.rows_read == self.rows_parsed == self.rows_loaded + self.rows_quarantined

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
) -> IngestReport:
    """Load ``entity_name``: what is new since the ledger's cursor, or (``window``) re-read those days.

    Everything happens in one transaction: a failure (a schema change, an unreachable source, a
    refused batch) leaves the warehouse exactly as the last good run left it.
    """
    entity = ENTITIES[entity_name]
    con.execute("SET TimeZone = 'UTC'")
    ensure_ledger(con)
    ensure_entity_tables(con, entity)
    located = settings.source_of(entity_name)
    mode = "incremental" if window is None else "window"
    batch_id = f"{entity_name}:{mode}:{uuid.uuid4().hex[:12]}"
    started_at = _now()
    report = IngestReport(entity_name, located[0] if located else None, batch_id, mode, "loaded", None)
    # Reading fills connection-local temp tables only, so it stays outside the transaction.
    create_batch_tables(con, entity)
    if located is None:
        report.status = "not configured"
        _commit_batch(con, report, ReadResult(), started_at, run_id, entity, RowFormats(), settings.quality, False)
        return report
    source_name, source, mapping = located
    state = source_state(con, entity_name)
    config_sha = _config_fingerprint(source, mapping, settings.history_start)
    notes = []
    if window is None and state.config_sha is not None and state.config_sha != config_sha:
        # The mapping or a declared format changed since the last load: what was read (or refused)
        # under the old config is read again under the new one.
        window, mode = Window(None, None), "window"
        report.mode = mode
        notes.append("the entity's config changed since the last load: every row of the source is read again")
    request = ReadRequest(
        window=window,
        history_start=history_start(settings),
        state=state,
        today=today,
        scratch_dir=settings.data_dir / "tmp",
    )
    try:
        read = _read(con, source_name, source, entity, mapping, request)
    except SourceUnavailableError as exc:
        if not is_optional(source, mapping):
            raise
        report.status = "absent"
        read = ReadResult(warnings=[f"{exc} (optional: the step goes on without it)"])
        create_batch_tables(con, entity)
        _commit_batch(con, report, read, started_at, run_id, entity, RowFormats(), settings.quality, False)
        return report
    _check_not_empty(con, source_name, source, entity, mapping, read, request)
    formats = RowFormats(
        date_formats=date_formats(source, mapping),
        decimal=decimal_mark(source, mapping),
        where=f"entity '{entity_name}', source '{source_name}'",
        placement_column=_placement_column(source, mapping),
        placement_hint=(
            "the database compares updated_at as text, and only ISO-8601 text (YYYY-MM-DD hh:mm:ss) sorts by "
            "time; correct the value in the source, or map a timestamp column as updated_at"
            if isinstance(source, SqlSource)
            else f"it is not a date (declare `date_format` on entity '{entity_name}' if it is written otherwise)"
        ),
    )
    if read.rows_read == 0 and not read.scope.sources and read.scope.days is None:
        report.status = "nothing new"
    read.notes[:0] = notes
    return _commit_batch(con, report, read, started_at, run_id, entity, formats, settings.quality, validate, config_sha)


def _config_fingerprint(source, mapping, first_day) -> str:
    """What of the config decides which rows are read and how: the mapping, the source's formats and the
    history's start (not the source's location)."""
    import hashlib
    import json

    described = {
        "mapping": mapping.model_dump(mode="json"),
        "source": source.model_dump(mode="json", exclude={"entities", "path", "url", "optional", "ignore_files"}),
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
        f"(_partition_date IS NULL AND _source_location IN (SELECT _source_location FROM {BATCH_TABLE} "
        f"WHERE _partition_date IS NULL UNION ALL SELECT _source_location FROM {REJECTS_TABLE} "
        "WHERE _partition_date IS NULL))"
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
    started_at: str,
    run_id: str,
    entity: Entity,
    formats: RowFormats,
    quality: QualitySettings,
    validate: bool,
    config_sha: str | None = None,
) -> IngestReport:
    """Replace the batch's scope, apply the row rules, run the blocking checks, and commit or roll back."""
    report.rows_parsed = con.execute(
        f"SELECT (SELECT count(*) FROM {BATCH_TABLE}) + (SELECT count(*) FROM {REJECTS_TABLE})"
    ).fetchall()[0][0]
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
    con.execute("BEGIN TRANSACTION")
    try:
        report.rows_replaced, replaced_days = _delete_scope(con, entity, read.scope)
        report.rows_loaded, report.rows_quarantined = split_batch(con, entity, report.batch_id, started_at, formats)
        report.quarantine_reasons = dict(
            con.execute(
                f"SELECT {GROUPED_REASON_SQL} AS reason, count(*) FROM quarantine.{entity.name} "
                "WHERE _batch_id = $b GROUP BY reason ORDER BY 2 DESC, 1 LIMIT 20",
                {"b": report.batch_id},
            ).fetchall()
        )
        report.quarantine_sample = [
            {"where": where, "reason": reason, "record": record}
            for where, reason, record in con.execute(
                f"SELECT _source_location, _reason, _raw_record FROM quarantine.{entity.name} WHERE _batch_id = $b "
                "ORDER BY length(_source_location), _source_location LIMIT 5",
                {"b": report.batch_id},
            ).fetchall()
        ]
        report.checks = _blocking_checks(con, entity, report, quality, validate)
        refused = [c for c in report.checks if c.blocking and not c.passed]
        if refused:
            con.execute("ROLLBACK")
            report.status = "refused"
            raise IngestRefusedError(
                f"entity '{entity.name}' (source '{report.source}'): the batch was refused and nothing was "
                "committed; the last good tables are unchanged: "
                + "; ".join(f"{c.name}: {c.message}" for c in refused),
                report,
            )
        new_days = [
            d
            for (d,) in con.execute(
                f"SELECT DISTINCT _partition_date FROM raw.{entity.name} WHERE _batch_id = $b AND _partition_date "
                f"IS NOT NULL UNION SELECT DISTINCT _partition_date FROM quarantine.{entity.name} WHERE _batch_id = $b "
                "AND _partition_date IS NOT NULL",
                {"b": report.batch_id},
            ).fetchall()
        ]
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
            days_touched=sorted(set(new_days) | set(replaced_days)),
            started_at=started_at,
            finished_at=_now(),
            config_sha=config_sha,
        )
        con.execute("COMMIT")
    except IngestRefusedError:
        raise
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return report


def _blocking_checks(
    con: duckdb.DuckDBPyConnection, entity: Entity, report: IngestReport, quality: QualitySettings, validate: bool
) -> list[CheckOutcome]:
    """The checks that decide whether the batch may commit (and those that only report)."""
    checks = [
        CheckOutcome(
            "rows_reconciled",
            report.reconciled,
            True,
            f"rows read {report.rows_read:,}, handed to the rules {report.rows_parsed:,}, loaded "
            f"{report.rows_loaded:,} + quarantined {report.rows_quarantined:,}",
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
    if validate and report.rows_loaded:
        from crm.ingest.expectations import validate_frame

        frame = con.execute(
            f"SELECT * EXCLUDE (_batch_id, _source, _ingested_at) FROM raw.{entity.name} WHERE _batch_id = $b",
            {"b": report.batch_id},
        ).df()
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
                    or f"{len(chosen)} expectations met on {len(frame):,} rows",
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
