"""Read an entity from a cursor-paged JSON-lines export (``page_000001.jsonl`` ... ; line 1 is the header).

The cursor chain is verified as it is walked: a page whose ``after_cursor`` points back to a page
already read (a cycle) or to a page that does not exist while the export says more follows (a
dangling pointer) is an error naming the page, never a silent end of the walk. A page whose header
cannot be read (not JSON, no ``export_date``) cannot be trusted: its lines go to quarantine with
the reason, and the walk continues with the page its ``after_cursor`` names or, when even that is
unreadable, the next page file by name. Ticket lines that are not JSON objects are quarantined.

Incremental runs resume at the stored cursor (the page after the last one read); an explicit
window walks from the first cursor and reads the pages exported on its days.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import orjson
import polars as pl

from crm.ingest.entities import Entity
from crm.ingest.readers import (
    BATCH_TABLE,
    REJECTS_TABLE,
    CursorChainError,
    LoadedFile,
    ReadRequest,
    ReadResult,
    Scope,
    SourceUnavailableError,
    Window,
    _lit,
    resolve_columns,
)
from crm.settings import EntityMapping, PagedExportSource

# Parsed tickets are handed to DuckDB in slices of this many, so memory stays flat for any history.
_PAGE_FLUSH_ROWS = 100_000


@dataclass(frozen=True)
class Page:
    cursor: str
    path: Path
    header: dict | None
    day: date | None
    problem: str | None  # why the header cannot be used (its lines are quarantined)
    next_cursor: str | None  # where the chain goes on (None: it ends here)
    after_cursor: str | None = None  # as the header says (on the last page: where the next export writes)


def _read_header(path: Path) -> tuple[dict | None, str | None]:
    with path.open("rb") as handle:
        first = handle.readline()
    if not first.strip():
        return None, "the page is empty (no header line)"
    try:
        header = orjson.loads(first)
    except orjson.JSONDecodeError as exc:
        return None, f"the page header (line 1) is not JSON ({exc})"
    if not isinstance(header, dict):
        return None, "the page header (line 1) is not a JSON object"
    return header, None


def _next_by_name(path: Path) -> str | None:
    later = sorted(p.stem for p in path.parent.glob("*.jsonl") if p.name > path.name)
    return later[0] if later else None


def page_header_day(path: Path) -> date | None:
    header, problem = _read_header(path)
    if problem or header is None:
        return None
    try:
        return date.fromisoformat(str(header.get("export_date")))
    except ValueError:
        return None


def walk_pages(source_name: str, source: PagedExportSource, start_cursor: str) -> Iterator[Page]:
    """Follow the export's cursor chain from ``start_cursor`` until ``end_of_stream``, verifying it."""
    cursor: str | None = start_cursor
    seen: dict[str, str] = {}
    previous: Page | None = None
    last_day: date | None = None
    while cursor is not None:
        path = source.path / f"{cursor}.jsonl"
        if cursor in seen:
            raise CursorChainError(
                f"source '{source_name}': page '{previous.path.name}' points (after_cursor {cursor!r}) back to page "
                f"'{path.name}', read earlier in this walk: the export's cursor chain has a cycle; the export "
                f"must be repaired (pages after '{previous.path.name}' cannot be found)"
            )
        if not path.exists():
            if previous is None:
                return
            raise CursorChainError(
                f"source '{source_name}': page '{previous.path.name}' says more pages follow (end_of_stream is not "
                f"true) and points (after_cursor {cursor!r}) to '{path.name}', which does not exist in {source.path}: "
                "the cursor chain is broken; the export must be repaired or completed"
            )
        seen[cursor] = path.name
        header, problem = _read_header(path)
        day, next_cursor = None, None
        if header is not None:
            try:
                day = date.fromisoformat(str(header.get("export_date")))
            except ValueError:
                problem = f"the page header's export_date {header.get('export_date')!r} is not a date"
            after = header.get("after_cursor")
            if header.get("end_of_stream") is True:
                next_cursor = None
            elif isinstance(after, str) and after:
                next_cursor = after
            else:
                problem = problem or f"the page header's after_cursor {after!r} names no page"
        if problem is not None and next_cursor is None and not (header or {}).get("end_of_stream"):
            next_cursor = _next_by_name(path)
        if day is None:
            day = last_day
        after = (header or {}).get("after_cursor")
        page = Page(
            cursor, path, header, day, problem, next_cursor, after if isinstance(after, str) and after else None
        )
        yield page
        previous, last_day, cursor = page, day or last_day, next_cursor


def read_paged_export(
    con: duckdb.DuckDBPyConnection,
    source_name: str,
    source: PagedExportSource,
    entity: Entity,
    mapping: EntityMapping,
    request: ReadRequest,
) -> ReadResult:
    """Pages of the window, or (incremental) every page after the stored cursor."""
    if not source.path.is_dir():
        raise SourceUnavailableError(
            f"source '{source_name}': folder {source.path} does not exist; check `path:` of source '{source_name}' "
            "(a relative path resolves against the config file's folder), or mark the source `optional: true`"
        )
    history_start, state = request.history_start, request.state
    scope = Scope(source_filter=f"_source LIKE {_lit(source_name + ':%')}")
    result = ReadResult(scope=scope)
    if request.window is not None:
        starts = [d for d in (request.window.start, history_start) if d is not None]
        window = Window(max(starts) if starts else None, request.window.end)
        scope.days = window
        # A re-run of recent days resumes at the stored cursor instead of walking the whole chain.
        resume = state.cursor is not None and state.cursor_date is not None and window.start is not None
        start_cursor = state.cursor if resume and state.cursor_date < window.start else source.first_cursor
    else:
        window = Window(history_start, None)
        start_cursor = state.cursor or source.first_cursor
    if not (source.path / f"{source.first_cursor}.jsonl").exists():
        raise SourceUnavailableError(
            f"source '{source_name}': the export's first page '{source.first_cursor}.jsonl' does not exist in "
            f"{source.path}; check `path:` and `first_cursor:` of source '{source_name}'"
        )
    rows = _PageRows()
    for page in walk_pages(source_name, source, start_cursor):
        if page.day is not None and window.end is not None and page.day > window.end:
            break
        # The stored cursor names the next page to read after the last one read.
        result.cursor = page.after_cursor or page.next_cursor or page.cursor
        result.cursor_date = page.day or result.cursor_date
        data = page.path.read_bytes()
        lines = sum(1 for line in data.split(b"\n")[1:] if line.strip())
        if page.day is not None and history_start is not None and page.day < history_start:
            result.count_outside(lines, page.day, page.day)
            continue
        if page.day is not None and not window.contains(page.day):
            continue
        relative = page.path.relative_to(source.path).as_posix()
        origin = f"{source_name}:{relative}"
        page_rows = _read_page(rows, page, data, lines, relative, origin, source_name, entity, mapping, result)
        if request.incremental:
            scope.sources.append(origin)
        result.rows_read += page_rows
        result.files.append(LoadedFile(relative, page.day, len(data), hashlib.sha256(data).hexdigest(), page_rows))
        if rows.pending >= _PAGE_FLUSH_ROWS:
            rows.flush(con, mapping, entity)
    rows.flush(con, mapping, entity)
    return result


def _read_page(
    rows, page: Page, data: bytes, lines: int, relative, origin, source_name, entity, mapping, result
) -> int:
    """One page's lines into the batch (or, when its header cannot be used, into quarantine); rows read."""
    if page.problem is not None:
        rows.reject_page(data, relative, page.day, origin, f"page header unreadable: {page.problem}")
        result.warnings.append(
            f"source '{source_name}', page '{relative}': {page.problem}; its {lines} line(s) went to quarantine"
            + (f" and the walk went on at '{page.next_cursor}'" if page.next_cursor else "")
        )
        return lines
    page_rows, page_keys = rows.read(data, relative, page.day, origin)
    # A page whose every line is broken (they go to quarantine) has no columns to check.
    if page_keys:
        _, warnings = resolve_columns(sorted(page_keys), mapping, entity, source_name, f"page '{relative}'")
        result.drift_warnings.extend(warnings)
    announced = page.header.get("count")
    if isinstance(announced, int) and announced != page_rows:
        result.warnings.append(
            f"source '{source_name}', page '{relative}': the header announces {announced} lines, "
            f"the page holds {page_rows}"
        )
    return page_rows


def _dig(record: dict, dotted: str) -> object:
    value: object = record
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value).decode()
    return str(value)


class _PageRows:
    """Records parsed from export pages, with where each came from; unparseable lines as rejects."""

    def __init__(self) -> None:
        self._start_over()

    def _start_over(self) -> None:
        self.records: list[dict] = []
        self.sources: list[str] = []
        self.locations: list[str] = []
        self.days: list[date | None] = []
        self.rejects: list[tuple] = []

    @property
    def pending(self) -> int:
        return len(self.records) + len(self.rejects)

    def read(self, data: bytes, relative: str, day: date | None, source: str) -> tuple[int, set[str]]:
        """Parse one page's ticket lines; returns (rows read, field names seen)."""
        keys_seen: set[str] = set()
        count = 0
        for line_number, line in enumerate(data.split(b"\n")[1:], start=2):
            if not line.strip():
                continue
            count += 1
            where = f"{relative}:{line_number}"
            try:
                record = orjson.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except (orjson.JSONDecodeError, ValueError) as exc:
                text = line.decode("utf-8", errors="replace").rstrip("\r")
                self.rejects.append((source, where, day, f"broken JSON line: {exc}", None, text))
                continue
            keys_seen.update(_flat_keys(record))
            self.records.append(record)
            self.sources.append(source)
            self.locations.append(where)
            self.days.append(day)
        return count, keys_seen

    def reject_page(self, data: bytes, relative: str, day: date | None, source: str, reason: str) -> None:
        for line_number, line in enumerate(data.split(b"\n")[1:], start=2):
            if line.strip():
                text = line.decode("utf-8", errors="replace").rstrip("\r")
                self.rejects.append((source, f"{relative}:{line_number}", day, reason, None, text))

    def flush(self, con: duckdb.DuckDBPyConnection, mapping: EntityMapping, entity: Entity) -> None:
        """Move what was parsed so far into the batch tables and start over."""
        frame = self.mapped_frame(mapping, entity)
        if frame.height:
            con.register("_page_frame", frame.to_arrow())
            con.execute(f"INSERT INTO {BATCH_TABLE} SELECT * FROM _page_frame")
            con.unregister("_page_frame")
        if self.rejects:
            reject_frame = pl.DataFrame(
                self.rejects,
                schema={
                    "_source": pl.String,
                    "_source_location": pl.String,
                    "_partition_date": pl.Date,
                    "_reason": pl.String,
                    "_field": pl.String,
                    "_raw_record": pl.String,
                },
                orient="row",
            )
            con.register("_page_rejects", reject_frame.to_arrow())
            con.execute(f"INSERT INTO {REJECTS_TABLE} SELECT * FROM _page_rejects")
            con.unregister("_page_rejects")
        self._start_over()

    def mapped_frame(self, mapping: EntityMapping, entity: Entity) -> pl.DataFrame:
        data: dict[str, list] = {}
        for canonical in entity.column_names:
            path = mapping.columns.get(canonical)
            if path is None:
                data[canonical] = [None] * len(self.records)
                continue
            alternatives = [path] + [new for new, old in mapping.renames.items() if old == path]
            data[canonical] = [_as_text(_first_present(record, alternatives)) for record in self.records]
        frame = pl.DataFrame(data, schema={c: pl.String for c in entity.column_names})
        return frame.with_columns(
            pl.Series("_source", self.sources, dtype=pl.String),
            pl.Series("_source_location", self.locations, dtype=pl.String),
            pl.Series("_partition_date", self.days, dtype=pl.Date),
        )


def _first_present(record: dict, paths: list[str]) -> object:
    for candidate in paths:
        value = _dig(record, candidate)
        if value is not None:
            return value
    return None


def _flat_keys(record: dict, prefix: str = "") -> Iterator[str]:
    for key, value in record.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, dict):
            yield from _flat_keys(value, name + ".")
