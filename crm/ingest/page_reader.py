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
import pyarrow as pa

from crm.ingest.entities import Entity
from crm.ingest.readers import (
    BATCH_TABLE,
    REJECTS_TABLE,
    SLICE_ROWS,
    CursorChainError,
    LoadedFile,
    ReadRequest,
    ReadResult,
    Scope,
    SourceUnavailableError,
    Window,
    _lit,
    _q,
    resolve_columns,
)
from crm.settings import EntityMapping, PagedExportSource


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
    rows = _PageRows(con, source_name, entity, mapping, result)
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
        page_rows = _read_page(rows, page, data, lines, relative, origin, source_name, result)
        if request.incremental:
            scope.sources.append(origin)
        result.rows_read += page_rows
        result.files.append(LoadedFile(relative, page.day, len(data), hashlib.sha256(data).hexdigest(), page_rows))
        # A slice of pages is parsed by DuckDB and handed to the service before the next is read
        # (a fifth of SLICE_ROWS: a ticket line is wider than a CSV row, and JSON parsing needs room).
        if rows.pending >= SLICE_ROWS // 5:
            rows.flush()
            request.slice_done()
    rows.flush()
    return result


def _read_page(rows: _PageRows, page: Page, data: bytes, lines: int, relative, origin, source_name, result) -> int:
    """One page's lines into the slice (or, when its header cannot be used, into quarantine); rows read."""
    if page.problem is not None:
        rows.reject_page(data, relative, page.day, origin, f"page header unreadable: {page.problem}")
        result.warnings.append(
            f"source '{source_name}', page '{relative}': {page.problem}; its {lines} line(s) went to quarantine"
            + (f" and the walk went on at '{page.next_cursor}'" if page.next_cursor else "")
        )
        return lines
    page_rows = rows.read(data, relative, page.day, origin)
    announced = page.header.get("count")
    if isinstance(announced, int) and announced != page_rows:
        result.warnings.append(
            f"source '{source_name}', page '{relative}': the header announces {announced} lines, "
            f"the page holds {page_rows}"
        )
    return page_rows


class _PageRows:
    """A slice of export pages: their ticket lines, parsed by DuckDB's JSON functions.

    Python only splits each page into lines (and decodes them: a line that is not UTF-8 is a
    broken line, quarantined at once); DuckDB tells objects from broken lines, extracts the mapped
    fields (``$.requester.email``, the renamed field when the first is absent) and sums up the
    fields each page holds (for the drift warnings) in one pass per slice. The few broken lines
    come back to Python for the parser's own reason.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, source_name: str, entity: Entity, mapping, result) -> None:
        self.con, self.source_name, self.entity, self.mapping, self.result = con, source_name, entity, mapping, result
        self._start_over()

    def _start_over(self) -> None:
        self.lines: list[str] = []
        self.pages: list[str] = []  # the page (relative path) of each line
        self.sources: list[str] = []
        self.locations: list[str] = []
        self.days: list[date | None] = []
        self.rejects: list[tuple] = []
        self.read_pages: list[str] = []

    @property
    def pending(self) -> int:
        return len(self.lines) + len(self.rejects)

    def read(self, data: bytes, relative: str, day: date | None, source: str) -> int:
        """Take one page's ticket lines into the slice; returns the rows read."""
        raw_lines = data.split(b"\n")[1:]
        try:
            texts: list[str | None] = data.decode("utf-8").split("\n")[1:]
        except UnicodeDecodeError:
            texts = [_utf8(line) for line in raw_lines]
        count = 0
        for line_number, (line, text) in enumerate(zip(raw_lines, texts, strict=True), start=2):
            if not line.strip():
                continue
            count += 1
            where = f"{relative}:{line_number}"
            if text is None:
                self.rejects.append((source, where, day, _broken_reason(line), None, _shown(line)))
                continue
            self.lines.append(text)
            self.pages.append(relative)
            self.sources.append(source)
            self.locations.append(where)
            self.days.append(day)
        self.read_pages.append(relative)
        return count

    def reject_page(self, data: bytes, relative: str, day: date | None, source: str, reason: str) -> None:
        for line_number, line in enumerate(data.split(b"\n")[1:], start=2):
            if line.strip():
                self.rejects.append((source, f"{relative}:{line_number}", day, reason, None, _shown(line)))

    def flush(self) -> None:
        """Parse the slice's lines into the batch tables and start over."""
        con = self.con
        if self.lines:
            lines = pa.table(
                {
                    "_source": pa.array(self.sources, pa.string()),
                    "_source_location": pa.array(self.locations, pa.string()),
                    "_partition_date": pa.array(self.days, pa.date32()),
                    "_page": pa.array(self.pages, pa.string()),
                    "line": pa.array(self.lines, pa.string()),
                }
            )
            # The slice's lines now live in Arrow; Python's copies go before DuckDB parses them.
            self.lines, self.pages, self.sources, self.locations, self.days = [], [], [], [], []
            con.register("_page_lines_arrow", lines)
            try:
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE _page_lines AS SELECT *, coalesce(CASE WHEN json_valid(line) "
                    "THEN json_type(line) = 'OBJECT' END, false) AS _object FROM _page_lines_arrow"
                )
            finally:
                con.unregister("_page_lines_arrow")
            self._check_fields()
            for source, where, day, line in con.execute(
                "SELECT _source, _source_location, _partition_date, line FROM _page_lines WHERE NOT _object"
            ).fetchall():
                encoded = line.encode("utf-8")
                self.rejects.append((source, where, day, _broken_reason(encoded), None, _shown(encoded)))
            # One parse per line: every mapped path (and the renamed ones) extracted in one call.
            paths = self._paths()
            extracted = ", ".join(_lit(_json_path(p)) for p in paths) or "'$'"
            columns = ", ".join(f"{self._field_sql(c, paths)} AS {_q(c)}" for c in self.entity.column_names)
            con.execute(
                f"INSERT INTO {BATCH_TABLE} SELECT {columns}, _source, _source_location, _partition_date FROM ("
                f"SELECT json_extract_string(line, [{extracted}]) AS _fields, _source, _source_location, "
                "_partition_date FROM _page_lines WHERE _object)"
            )
            con.execute("DROP TABLE _page_lines")
            del lines
        if self.rejects:
            rejects = pa.table(
                {
                    name: pa.array([r[i] for r in self.rejects], kind)
                    for i, (name, kind) in enumerate(
                        (
                            ("_source", pa.string()),
                            ("_source_location", pa.string()),
                            ("_partition_date", pa.date32()),
                            ("_reason", pa.string()),
                            ("_field", pa.string()),
                            ("_raw_record", pa.string()),
                        )
                    )
                }
            )
            con.register("_page_rejects", rejects)
            con.execute(f"INSERT INTO {REJECTS_TABLE} SELECT * FROM _page_rejects")
            con.unregister("_page_rejects")
        self._start_over()

    def _alternatives(self, canonical: str) -> list[str]:
        """Where a canonical column is read: its mapped field (a dotted path into nested objects),
        then the fields it was renamed from; nothing when it is not mapped."""
        path = self.mapping.columns.get(canonical)
        if path is None:
            return []
        return [path] + [new for new, old in self.mapping.renames.items() if old == path]

    def _paths(self) -> list[str]:
        return list(dict.fromkeys(p for c in self.entity.column_names for p in self._alternatives(c)))

    def _field_sql(self, canonical: str, paths: list[str]) -> str:
        """The canonical column's text from ``_fields`` (the extracted paths): the first present; a
        JSON null counts as absent; an object or a list is its JSON text."""
        found = [f"_fields[{paths.index(p) + 1}]" for p in self._alternatives(canonical)]
        if not found:
            return "CAST(NULL AS VARCHAR)"
        return found[0] if len(found) == 1 else f"coalesce({', '.join(found)})"

    def _check_fields(self) -> None:
        """Drift warnings per page, from the fields its ticket lines hold (nested ones as ``a.b``).

        DuckDB sums up a page's fields as one JSON structure; where a field is an object on one line
        and something else on another (the structure says ``JSON``), that page's fields are listed
        in Python instead, line by line, so that no nested field is missed.
        """
        structures = dict(
            self.con.execute(
                "SELECT _page, CAST(json_group_structure(CAST(line AS JSON)) AS VARCHAR) FROM _page_lines "
                "WHERE _object GROUP BY _page"
            ).fetchall()
        )
        for relative in self.read_pages:
            structure = structures.get(relative)
            # A page whose every line is broken (they go to quarantine) has no columns to check.
            if structure is None:
                continue
            parsed = orjson.loads(structure)
            if '"JSON"' in structure:
                keys = set()
                for (line,) in self.con.execute(
                    "SELECT line FROM _page_lines WHERE _object AND _page = $p", {"p": relative}
                ).fetchall():
                    keys.update(_flat_keys(orjson.loads(line)))
            else:
                keys = set(_flat_keys(parsed))
            _, warnings = resolve_columns(
                sorted(keys), self.mapping, self.entity, self.source_name, f"page '{relative}'"
            )
            self.result.drift_warnings.extend(warnings)


def _utf8(line: bytes) -> str | None:
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _shown(line: bytes) -> str:
    """A rejected line as quarantine keeps it: its text, undecodable bytes replaced."""
    return line.decode("utf-8", errors="replace").rstrip("\r")


def _broken_reason(line: bytes) -> str:
    """Why a line is not a ticket, in the JSON parser's words."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        return f"broken JSON line: {exc}"
    return "broken JSON line: not a JSON object" if not isinstance(record, dict) else "broken JSON line"


def _json_path(dotted: str) -> str:
    """``requester.email`` as a JSON path with each key quoted (``$."requester"."email"``)."""
    return "$" + "".join('."' + part.replace("\\", "\\\\").replace('"', '\\"') + '"' for part in dotted.split("."))


def _flat_keys(record: dict, prefix: str = "") -> Iterator[str]:
    for key, value in record.items():
        name = f"{prefix}{key}"
        yield name
        if isinstance(value, dict):
            yield from _flat_keys(value, name + ".")
