"""What every reader shares: the batch tables, the column mapping, the window, and the errors.

A reader reads one entity from one source into connection-local temp tables of untyped
canonical columns, whatever the source kind (sql_reader.py, file_reader.py, page_reader.py):

- it renames the source's columns to the canonical ones (config mapping, plus known renames);
- it records where each row came from (file:line, or table:key) and the day it belongs to;
- it keeps rows it cannot even parse (a broken CSV or JSON line, a page with an unreadable
  header, a file whose name misses the pattern) as *rejects* with the reason, so nothing read is lost;
- it says which rows of the warehouse its read replaces (its *scope*), and counts what it saw but
  left out because it lies before the history start (never dropped silently).

Typing and row rules are the validator's job (validate.py); readers keep every value as text. An
error a reader raises names the source, the file or table, and what to change in the config.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb

from crm.ingest.entities import Entity
from crm.settings import EntityMapping

BATCH_TABLE = "_ingest_batch"
REJECTS_TABLE = "_ingest_rejects"

# How much a reader puts in the batch tables before it hands them over (``ReadRequest.slice_done``):
# a few days of marketing events, a slice of SQL rows, a few dozen export pages. Large enough that
# the per-slice work (row rules, suppression) is not repeated too often, small enough that a slice
# holds well under a gigabyte whatever the window's length.
SLICE_ROWS = 500_000
SLICE_BYTES = 64 * 1024 * 1024


class IngestError(ValueError):
    """A source cannot be read as configured; the message names the source and the fix."""


class SchemaDriftError(IngestError):
    """A source no longer has a column the mapping needs; the message names source, file and column."""


class SourceUnavailableError(IngestError):
    """A configured source cannot be reached: a missing folder, file, database or table."""


class SourceEmptyError(IngestError):
    """A configured source holds nothing at all, though nothing says it may be empty."""


class CursorChainError(IngestError):
    """A paged export's cursor chain is broken: a cycle, or a page that points to a missing page."""


@dataclass(frozen=True)
class Window:
    """Inclusive range of days; ``None`` leaves that side open."""

    start: date | None = None
    end: date | None = None

    def contains(self, day: date) -> bool:
        return (self.start is None or day >= self.start) and (self.end is None or day <= self.end)

    def __str__(self) -> str:
        return f"{self.start or '…'}..{self.end or '…'}"


@dataclass(frozen=True)
class LoadedUnit:
    """What the ledger remembers of a file or page already loaded (ops.loaded_files)."""

    path: str
    partition_date: date | None
    size_bytes: int
    modified_ns: int | None
    sha256: str


@dataclass(frozen=True)
class SourceState:
    """Where an entity's source stood after the last load: the ledger's cursor."""

    watermark: str | None = None
    cursor: str | None = None
    cursor_date: date | None = None
    loaded: dict[str, LoadedUnit] = field(default_factory=dict)
    # The entity's mapping and formats as the last load read them: a change re-reads everything.
    config_sha: str | None = None


@dataclass(frozen=True)
class ReadRequest:
    """What to read: an explicit window of days to re-read and replace, or (None) what is new
    since the ledger's cursor; and the first day of the history (None: everything the source holds)."""

    window: Window | None
    history_start: date | None
    state: SourceState = SourceState()
    # Places a row of a single file without a date column (the day the file is read).
    today: date | None = None
    # Where a reader may write scratch files (a transcoded CSV): under the data folder.
    scratch_dir: Path | None = None
    # Called by a reader when the batch tables hold a slice's worth of rows: the service moves them
    # into raw and quarantine (inside the batch's one transaction) and empties the batch tables, so
    # a reader's memory is bounded by a slice, not by the window (docs/sources.md, "Slices").
    end_slice: Callable[[], None] | None = None

    @property
    def incremental(self) -> bool:
        return self.window is None

    def slice_done(self) -> None:
        if self.end_slice is not None:
            self.end_slice()


@dataclass
class LoadedFile:
    path: str
    partition_date: date | None
    size_bytes: int
    sha256: str
    rows_read: int
    modified_ns: int | None = None


@dataclass
class Scope:
    """Which rows of raw.<entity> and quarantine.<entity> this read replaces.

    ``source_filter`` (SQL on ``_source``) restricts everything to this source's rows. Rows dated
    in ``days`` are replaced; so are rows read from ``sources`` (files or pages re-read whole).
    Undated rows (a value that cannot place a row in the history) are replaced by their
    ``_source_location`` when read again, so re-reading never counts one twice.
    """

    source_filter: str
    days: Window | None = None
    sources: list[str] = field(default_factory=list)
    # False: ``days`` only records the window read (daily drops replace file by file, so the rows
    # of a file no longer in the folder stay).
    replace_days: bool = True


@dataclass
class ReadResult:
    rows_read: int = 0
    # The source's columns moved: a new column, a vanished optional one, a repeated header name.
    drift_warnings: list[str] = field(default_factory=list)
    # Anything else a person should hear about: an empty file, a misnamed file, an unreadable page
    # header, rows before the history start, an optional source that is absent.
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[LoadedFile] = field(default_factory=list)
    scope: Scope | None = None
    # Rows the source holds before the history start: counted, reported, not loaded.
    rows_outside: int = 0
    outside_first: date | None = None
    outside_last: date | None = None
    # Everything the source holds for this entity (rows, or ticket lines), when cheap to know.
    source_rows: int | None = None
    source_first: date | None = None
    source_last: date | None = None
    # Resumption state after this read: the SQL watermark, or the export cursor.
    watermark: str | None = None
    cursor: str | None = None
    cursor_date: date | None = None

    def count_outside(self, rows: int, first: date | None, last: date | None) -> None:
        if rows <= 0:
            return
        self.rows_outside += rows
        firsts = [d for d in (self.outside_first, first) if d is not None]
        lasts = [d for d in (self.outside_last, last) if d is not None]
        self.outside_first = min(firsts) if firsts else None
        self.outside_last = max(lasts) if lasts else None


def _q(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def create_batch_tables(con: duckdb.DuckDBPyConnection, entity: Entity) -> None:
    columns = ", ".join(f"{_q(c)} VARCHAR" for c in entity.column_names)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {BATCH_TABLE} ({columns}, "
        "_source VARCHAR, _source_location VARCHAR, _partition_date DATE)"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {REJECTS_TABLE} (_source VARCHAR, _source_location VARCHAR, "
        "_partition_date DATE, _reason VARCHAR, _field VARCHAR, _raw_record VARCHAR)"
    )


def resolve_columns(
    available: list[str], mapping: EntityMapping, entity: Entity, source_name: str, where: str
) -> tuple[dict[str, str | None], list[str]]:
    """Canonical column -> the name present in this file/page (or None), and drift warnings.

    A required column that is gone raises SchemaDriftError; a new column nobody mapped, or an
    optional one that disappeared, is a warning (the load goes on, the asset check says so).
    """
    present = set(available)
    renamed_from = {old: new for new, old in mapping.renames.items() if new in present}
    chosen: dict[str, str | None] = {}
    warnings: list[str] = []
    for canonical in entity.column_names:
        wanted = mapping.columns.get(canonical)
        if wanted is None:
            chosen[canonical] = None
        elif wanted in present:
            chosen[canonical] = wanted
        elif wanted in renamed_from:
            chosen[canonical] = renamed_from[wanted]
        elif entity.column(canonical).required:
            raise SchemaDriftError(
                f"source '{source_name}', {where}: required column '{wanted}' (canonical '{entity.name}.{canonical}') "
                f"is missing; found columns {sorted(present)}. If the source renamed it, add "
                f"`renames: {{<new name>: {wanted}}}` to entity '{entity.name}' in the sources config; if it "
                f"is called something else, map it: `columns: {{{canonical}: <its name>}}`."
            )
        else:
            chosen[canonical] = None
            warnings.append(
                f"source '{source_name}', {where}: column '{wanted}' (canonical '{entity.name}.{canonical}') "
                "is missing; loaded as empty"
            )
    known = set(mapping.columns.values()) | set(mapping.renames) | set(mapping.ignore_columns)
    # Dotted JSON paths are known by their top-level field too.
    known |= {name.split(".", 1)[0] for name in known}
    for extra in sorted(present - known):
        warnings.append(
            f"source '{source_name}', {where}: new column '{extra}' is not mapped and was not loaded "
            f"(map it under `columns`, or add it to `ignore_columns` of entity '{entity.name}' to silence this)"
        )
    return chosen, warnings
