"""Read an entity from CSV file drops: one file per day (``events/events_{date}.csv``) or one file
holding the whole history (``single_file: true``).

Which files a run reads comes from the ledger (ops.loaded_files): a file not loaded before, or
changed since (size, modification time, then checksum), starts the window; every file from its
day on is re-read and those days replaced, so a late or corrected file is never counted twice.
An explicit window re-reads its days. A single file is re-read whole when it changed.

Nothing in a drop folder is passed over in silence:

* a file whose name fits the pattern's shape but not its date (``contacts_2026-9-11.csv``,
  ``contacts_2026-09-11 (1).csv``) is read into quarantine, every line with the reason;
* a 0-byte or header-only file is an empty day with a warning;
* files no pattern reads are listed by :func:`unread_files` (for `crm check` and `crm audit`);
* a header that is one column holding another delimiter, or a repeated column name, is named.

Files with the same header are read in one DuckDB scan (two years of daily drops are ~730 files),
keeping each row's file and physical line; a long window is read in slices of files (about
``SLICE_BYTES`` each), each handed to the service before the next is read.
"""

from __future__ import annotations

import codecs
import csv
import fnmatch
import hashlib
import io
import re
import tempfile
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from crm.ingest.entities import Entity
from crm.ingest.formats import date_sql, detect_delimiter, format_for, unique_header
from crm.ingest.readers import (
    BATCH_TABLE,
    REJECTS_TABLE,
    SLICE_BYTES,
    LoadedFile,
    LoadedUnit,
    ReadRequest,
    ReadResult,
    SchemaDriftError,
    Scope,
    SourceUnavailableError,
    Window,
    _lit,
    _q,
    resolve_columns,
)
from crm.settings import EntityMapping, FileDropSource, date_formats


@dataclass(frozen=True)
class DropListing:
    dated: list[tuple[Path, date]]  # files named for a day
    near_misses: list[tuple[Path, str]]  # files that fit the pattern's shape, not its date: why
    single: Path | None = None  # a single_file entity's file, when it exists


def _file_date(relative: str, pattern: str) -> date | None:
    prefix, _, suffix = pattern.partition("{date}")
    if not (relative.startswith(prefix) and relative.endswith(suffix)):
        return None
    try:
        return date.fromisoformat(relative[len(prefix) : len(relative) - len(suffix)])
    except ValueError:
        return None


def pattern_glob(pattern: str) -> str:
    return pattern.replace("{date}", "*")


def list_drop_files(source: FileDropSource, mapping: EntityMapping) -> DropListing:
    """This entity's files: those named for a day, the near misses, or the single file."""
    if mapping.pattern is None:
        return DropListing([], [])
    if mapping.single_file:
        path = source.path / mapping.pattern
        return DropListing([], [], path if path.is_file() else None)
    dated, near = [], []
    for path in sorted(source.path.glob(pattern_glob(mapping.pattern))):
        if not path.is_file():
            continue
        relative = path.relative_to(source.path).as_posix()
        day = _file_date(relative, mapping.pattern)
        if day is not None:
            dated.append((path, day))
        else:
            near.append(
                (
                    path,
                    f"file name {relative!r} does not match the pattern {mapping.pattern!r} "
                    "({date} is YYYY-MM-DD): rename the file to load its rows, or remove it",
                )
            )
    return DropListing(dated, near)


def unread_files(source: FileDropSource) -> list[str]:
    """Files in the folders this source's patterns read that no pattern matches and no
    ``ignore_files`` glob names (relative paths): what nobody would read."""
    folders: set[Path] = set()
    patterns = []
    for mapping in source.entities.values():
        if mapping.pattern is None or mapping.single_file:
            continue
        folders.add((source.path / mapping.pattern).parent)
        patterns.append(pattern_glob(mapping.pattern))
    found = []
    for folder in sorted(folders):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            if not path.is_file():
                continue
            relative = path.relative_to(source.path).as_posix()
            if any(fnmatch.fnmatch(relative, p) for p in patterns):
                continue
            if any(fnmatch.fnmatch(relative, g) or fnmatch.fnmatch(path.name, g) for g in source.ignore_files):
                continue
            found.append(relative)
    return found


def _unchanged(path: Path, relative: str, loaded: dict[str, LoadedUnit]) -> bool:
    unit = loaded.get(relative)
    if unit is None:
        return False
    stat = path.stat()
    if stat.st_size != unit.size_bytes:
        return False
    if unit.modified_ns is not None and stat.st_mtime_ns == unit.modified_ns:
        return True
    return hashlib.sha256(path.read_bytes()).hexdigest() == unit.sha256


def _data_lines(data: bytes) -> int:
    return sum(1 for line in data.split(b"\n")[1:] if line.strip())


def _has_data_line(data: bytes) -> bool:
    """Whether a line after the header holds anything (``_data_lines(data) > 0`` without splitting)."""
    newline = data.find(b"\n")
    return newline >= 0 and bool(data[newline + 1 :].strip())


def read_file_drop(
    con: duckdb.DuckDBPyConnection,
    source_name: str,
    source: FileDropSource,
    entity: Entity,
    mapping: EntityMapping,
    request: ReadRequest,
) -> ReadResult:
    """The files of the window (incremental: from the first new or changed file's day on)."""
    if not source.path.is_dir():
        raise SourceUnavailableError(
            f"source '{source_name}': folder {source.path} does not exist; check `path:` of source "
            f"'{source_name}' (a relative path resolves against the config file's folder), or mark the source "
            "`optional: true` if it may be absent"
        )
    if mapping.pattern is None:
        raise SchemaDriftError(
            f"source '{source_name}', entity '{entity.name}': a file drop needs `pattern:` (e.g. events_{{date}}.csv)"
        )
    listing = list_drop_files(source, mapping)
    scope = Scope(source_filter=f"_source LIKE {_lit(source_name + ':%')}")
    result = ReadResult(scope=scope)
    reader = _CsvReader(con, source_name, source, entity, mapping, request, result)
    if mapping.single_file:
        reader.read_single(listing.single)
    else:
        reader.read_daily(listing)
    return result


@dataclass
class _DropFile:
    path: Path  # the file in the drop folder
    read_path: Path  # what DuckDB reads: the file itself, or its UTF-8 transcoding
    relative: str
    day: date | None  # None: a single file holding the whole history
    sha256: str
    size: int
    modified_ns: int
    header: tuple[str, ...]
    delimiter: str
    miscounted: list[tuple[int, str, int]]  # (line, text, fields) DuckDB would let through


class _CsvReader:
    def __init__(self, con, source_name, source, entity, mapping, request: ReadRequest, result: ReadResult):
        self.con, self.source_name, self.source = con, source_name, source
        self.entity, self.mapping, self.request, self.result = entity, mapping, request, result
        self._scratch: tempfile.TemporaryDirectory | None = None

    # -- which files --------------------------------------------------------------------------

    def read_daily(self, listing: DropListing) -> None:
        request, result, history_start = self.request, self.result, self.request.history_start
        if not listing.dated and not listing.near_misses:
            result.source_rows = 0
        in_history = []
        for path, day in listing.dated:
            if history_start is not None and day < history_start:
                result.count_outside(_data_lines(path.read_bytes()), day, day)
            else:
                in_history.append((path, day))
        if request.window is not None:
            starts = [d for d in (request.window.start, history_start) if d is not None]
            window = Window(max(starts) if starts else None, request.window.end)
        else:
            changed = [
                day
                for path, day in in_history
                if not _unchanged(path, path.relative_to(self.source.path).as_posix(), request.state.loaded)
            ]
            window = Window(min(changed), None) if changed else None
        if window is not None:
            chosen = [(path, day) for path, day in in_history if window.contains(day)]
            result.scope.days, result.scope.replace_days = window, False
            # Replaced file by file: the rows of a file that is no longer in the folder (archived
            # after it was read) stay, whatever window is re-read.
            result.scope.sources += [
                f"{self.source_name}:{p.relative_to(self.source.path).as_posix()}" for p, _ in chosen
            ]
            self._read_files(chosen)
        elif in_history:
            result.notes.append(f"no new or changed file since the last load ({len(in_history)} files loaded)")
        self._quarantine_near_misses(listing.near_misses)

    def read_single(self, path: Path | None) -> None:
        request, result = self.request, self.result
        if path is None:
            raise SourceUnavailableError(
                f"source '{self.source_name}': file {self.source.path / self.mapping.pattern} does not exist; "
                f"check `path:` and `pattern:` of entity '{self.entity.name}', or mark it `optional: true`"
            )
        relative = path.relative_to(self.source.path).as_posix()
        if request.window is None and _unchanged(path, relative, request.state.loaded):
            result.notes.append(f"file '{relative}' unchanged since the last load")
            return
        # Re-read whole: a changed file replaces every row this source loaded before.
        result.scope.days = request.window or Window(None, None)
        self._read_files([(path, None)])

    # -- reading ------------------------------------------------------------------------------

    def _read_files(self, files: list[tuple[Path, date | None]]) -> None:
        """Read the files in slices of about SLICE_BYTES (in day order), handing each over to the
        service (``ReadRequest.slice_done``) so that memory does not grow with the window."""
        pending: list[_DropFile] = []
        size = 0
        try:
            for path, day in files:
                drop = self._prepare(path, day)
                if drop is None:
                    continue
                pending.append(drop)
                size += drop.size
                if size >= SLICE_BYTES:
                    self._load_slice(pending)
                    pending, size = [], 0
            if pending:
                self._load_slice(pending)
        finally:
            self._drop_scratch()

    def _load_slice(self, drops: list[_DropFile]) -> None:
        """One slice: the files that share a header are read in one DuckDB scan."""
        groups: dict[tuple[tuple[str, ...], str], list[_DropFile]] = {}
        for drop in drops:
            groups.setdefault((drop.header, drop.delimiter), []).append(drop)
        for (header, _), group in groups.items():
            chosen, _ = resolve_columns(
                list(header), self.mapping, self.entity, self.source_name, f"file '{group[0].relative}'"
            )
            rows_by_file = self._load_group(list(header), chosen, group)
            for drop in group:
                self._record(drop, rows_by_file.get(drop.relative, 0))
        for table in (
            "_csv_rows",
            "_csv_placed",
            "_csv_broken",
            "_csv_line_numbers",
            "_csv_rejects",
            "_csv_reject_scans",
        ):
            self.con.execute(f"DROP TABLE IF EXISTS {table}")
        self._drop_scratch()
        self.request.slice_done()

    def _drop_scratch(self) -> None:
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    def _record(self, drop: _DropFile, rows: int) -> None:
        self.result.rows_read += rows
        self.result.files.append(
            LoadedFile(drop.relative, drop.day, drop.size, drop.sha256, rows, modified_ns=drop.modified_ns)
        )

    def _prepare(self, path: Path, day: date | None) -> _DropFile | None:
        """Header, delimiter and encoding of one file; None (after recording it) for an empty one."""
        source, relative = self.source, path.relative_to(self.source.path).as_posix()
        data = path.read_bytes()
        stat = path.stat()
        digest = hashlib.sha256(data).hexdigest()
        read_path = path
        if codecs.lookup(source.encoding).name != "utf-8":
            data, read_path = self._transcode(data, relative)
        first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")
        where = f"source '{self.source_name}', file '{relative}'"
        if not first.strip() or not _has_data_line(data):
            what = "is empty (0 bytes)" if not data else "has a header and no rows"
            self.result.warnings.append(f"{where} {what}: loaded as an empty day")
            self.result.files.append(LoadedFile(relative, day, stat.st_size, digest, 0, modified_ns=stat.st_mtime_ns))
            return None
        delimiter, problem = detect_delimiter(first, source.delimiter)
        if problem:
            raise SchemaDriftError(f"{where}: {problem}")
        names = next(csv.reader(io.StringIO(first), delimiter=delimiter), [])
        header, repeated = unique_header(names)
        for name in sorted(set(repeated)):
            positions = [i + 1 for i, n in enumerate(names) if n == name]
            self.result.drift_warnings.append(
                f"{where}: column {name!r} appears {len(positions)} times in the header (fields "
                f"{', '.join(map(str, positions))}); the first is read, the others are named {name!r} (2), ..."
            )
        _, warnings = resolve_columns(header, self.mapping, self.entity, self.source_name, f"file '{relative}'")
        self.result.drift_warnings.extend(warnings)
        return _DropFile(
            path,
            read_path,
            relative,
            day,
            digest,
            stat.st_size,
            stat.st_mtime_ns,
            tuple(header),
            delimiter,
            _miscounted_lines(data, delimiter, len(header)),
        )

    def _transcode(self, data: bytes, relative: str) -> tuple[bytes, Path]:
        """The file as UTF-8 (line for line, so line numbers hold) in a scratch file DuckDB reads.

        A line that is not valid in the declared encoding keeps its bytes, which DuckDB then rejects
        as a broken line (quarantined with the reason), like a wrong-encoding line in a UTF-8 file.
        """
        encoding = self.source.encoding
        try:
            text = data.decode(encoding).encode("utf-8")
        except UnicodeDecodeError:
            lines = []
            for line in data.split(b"\n"):
                try:
                    lines.append(line.decode(encoding).encode("utf-8"))
                except UnicodeDecodeError:
                    lines.append(line)
            text = b"\n".join(lines)
        if text.startswith(codecs.BOM_UTF8):
            text = text[len(codecs.BOM_UTF8) :]
        if self._scratch is None:
            scratch_root = self.request.scratch_dir
            if scratch_root is not None:
                scratch_root.mkdir(parents=True, exist_ok=True)
            self._scratch = tempfile.TemporaryDirectory(prefix="transcoded-", dir=scratch_root)
        target = Path(self._scratch.name) / f"{len(list(Path(self._scratch.name).iterdir()))}.csv"
        target.write_bytes(text)
        return text, target

    def _quarantine_near_misses(self, near_misses: list[tuple[Path, str]]) -> None:
        """Every line of a file the pattern almost matches, into quarantine with the reason (undated)."""
        rows = []
        for path, reason in near_misses:
            relative = path.relative_to(self.source.path).as_posix()
            data = path.read_bytes()
            count = 0
            for line_number, line in enumerate(data.split(b"\n")[1:], start=2):
                if not line.strip():
                    continue
                count += 1
                text = line.decode("utf-8", errors="replace").rstrip("\r")
                rows.append((f"{self.source_name}:{relative}", f"{relative}:{line_number}", None, reason, None, text))
            self.result.warnings.append(
                f"source '{self.source_name}': {reason}; its {count} line(s) went to quarantine"
            )
            self.result.rows_read += count
            self.result.files.append(LoadedFile(relative, None, len(data), hashlib.sha256(data).hexdigest(), count))
        if rows:
            self.con.executemany(f"INSERT INTO {REJECTS_TABLE} VALUES ($1, $2, $3, $4, $5, $6)", rows)

    def _load_group(self, header: list[str], chosen: dict[str, str | None], files: list[_DropFile]) -> dict[str, int]:
        """Load files sharing one header into the batch tables; rows read per file (relative path)."""
        con, source_name, mapping, entity = self.con, self.source_name, self.mapping, self.entity
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _csv_files (file_path VARCHAR, relative VARCHAR, day DATE, source VARCHAR)"
        )
        con.executemany(
            "INSERT INTO _csv_files VALUES ($1, $2, $3, $4)",
            [(str(f.read_path), f.relative, f.day, f"{source_name}:{f.relative}") for f in files],
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _csv_miscounted (file_path VARCHAR, line BIGINT, l VARCHAR, fields BIGINT)"
        )
        miscounted = [(str(f.read_path), line, text, n) for f in files for line, text, n in f.miscounted]
        if miscounted:
            con.executemany("INSERT INTO _csv_miscounted VALUES ($1, $2, $3, $4)", miscounted)
        columns = "{" + ", ".join(f"{_lit(h)}: 'VARCHAR'" for h in header) + "}"
        con.execute("DROP TABLE IF EXISTS _csv_rejects; DROP TABLE IF EXISTS _csv_reject_scans")
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _csv_rows AS SELECT * FROM read_csv($paths, header=true, delim=$delim, "
            f"quote='\"', escape='\"', auto_detect=false, columns={columns}, filename='_csv_file_path', "
            "store_rejects=true, rejects_table='_csv_rejects', rejects_scan='_csv_reject_scans', strict_mode=true)",
            {"paths": [str(f.read_path) for f in files], "delim": files[0].delimiter},
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _csv_rejected AS "
            "SELECT s.file_path, r.line, string_agg(DISTINCT r.error_type, ', ') AS errors, "
            "       any_value(r.error_message) AS message, any_value(r.csv_line) AS l "
            "FROM _csv_rejects r JOIN _csv_reject_scans s USING (scan_id, file_id) GROUP BY ALL"
        )
        con.execute(
            "DELETE FROM _csv_miscounted WHERE (file_path, line) IN (SELECT (file_path, line) FROM _csv_rejected)"
        )
        _number_parsed_lines(con, files)
        select = ", ".join((f"r.{_q(src)}" if src else "NULL") + f" AS {_q(canon)}" for canon, src in chosen.items())
        if not mapping.columns.get("order_id") and entity.name == "sales_orders":
            # A minimal orders file may have no order id: the file position identifies the row.
            select = select.replace('NULL AS "order_id"', "f.relative || ':' || l.line AS \"order_id\"")
        partition = self._partition_sql(chosen)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _csv_placed AS "
            f"  SELECT {select}, f.source AS _source, f.relative || ':' || l.line AS _source_location, "
            f"         {partition} AS _partition_date "
            "  FROM _csv_rows r POSITIONAL JOIN _csv_line_numbers l "
            "  JOIN _csv_files f ON f.file_path = r._csv_file_path "
            "  WHERE NOT l.miscounted"
        )
        reject_day = "f.day" if not self.mapping.single_file else "CAST(NULL AS DATE)"
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _csv_broken AS "
            f"  SELECT f.source, f.relative || ':' || x.line, {reject_day} AS day, x.reason, NULL, x.l FROM ("
            "    SELECT file_path, line, 'broken CSV line: ' || errors || ' (' || message || ')' AS reason, l "
            "    FROM _csv_rejected "
            "    UNION ALL SELECT file_path, line, 'broken CSV line: ' || fields || ' fields where the header has ' "
            f"              || {len(header)}, l FROM _csv_miscounted"
            "  ) x JOIN _csv_files f USING (file_path)"
        )
        if self.mapping.single_file:
            self._keep_single_file_window()
        con.execute(f"INSERT INTO {BATCH_TABLE} SELECT * FROM _csv_placed")
        con.execute(f"INSERT INTO {REJECTS_TABLE} SELECT * FROM _csv_broken")
        counted = dict(
            con.execute(
                "SELECT _source, count(*) FROM ("
                "  SELECT _source FROM _csv_placed UNION ALL SELECT source AS _source FROM _csv_broken"
                ") GROUP BY ALL"
            ).fetchall()
        )
        return {f.relative: counted.get(f"{source_name}:{f.relative}", 0) for f in files}

    def _partition_sql(self, chosen: dict[str, str | None]) -> str:
        """The day a row belongs to: its file's day, or (single file) the day of its date column."""
        if not self.mapping.single_file:
            return "f.day"
        column = self.mapping.date_column
        if column is None or chosen.get(column) is None:
            # A single file without dates (a full export of contacts): the day it was read.
            return f"DATE {_lit((self.request.today or date.today()).isoformat())}"
        fmt = format_for(date_formats(self.source, self.mapping), column)
        return date_sql(f"nullif(trim(r.{_q(chosen[column])}), '')", fmt)

    def _keep_single_file_window(self) -> None:
        """A single file's rows before the history start are counted, not loaded; in an explicit
        window only the window's rows are loaded (the rest belong to other days)."""
        con, history_start, window = self.con, self.request.history_start, self.request.window
        if history_start is not None:
            outside, first, last = con.execute(
                "SELECT count(*), min(_partition_date), max(_partition_date) FROM _csv_placed "
                "WHERE _partition_date < $start",
                {"start": history_start},
            ).fetchall()[0]
            self.result.count_outside(int(outside), first, last)
            con.execute("DELETE FROM _csv_placed WHERE _partition_date < $start", {"start": history_start})
        if window is not None:
            con.execute(
                "DELETE FROM _csv_placed WHERE _partition_date IS NOT NULL AND NOT "
                "(_partition_date BETWEEN coalesce($start, DATE '0001-01-01') AND coalesce($end, DATE '9999-12-31'))",
                {"start": window.start, "end": window.end},
            )


def _number_parsed_lines(con: duckdb.DuckDBPyConnection, files: list[_DropFile]) -> None:
    """``_csv_line_numbers``: the physical line of each parsed row, row for row with ``_csv_rows``.

    DuckDB keeps a scan's rows in file order, so a parsed row's line is the k-th line of its file
    (from 2, after the header) that the parser did not reject. Built with numpy per file and
    joined by position: no sort or hash join over tens of millions of rows.
    """
    parsed = dict(con.execute("SELECT _csv_file_path, count(*) FROM _csv_rows GROUP BY ALL").fetchall())
    rejected: dict[str, list[int]] = {}
    for file_path, line in con.execute("SELECT file_path, line FROM _csv_rejected ORDER BY ALL").fetchall():
        rejected.setdefault(file_path, []).append(line)
    lines, flags = [], []
    for drop in files:
        path = str(drop.read_path)
        count = parsed.get(path, 0)
        skipped = np.asarray(rejected.get(path, []), dtype=np.int64)
        numbers = np.setdiff1d(np.arange(2, count + len(skipped) + 2, dtype=np.int64), skipped, assume_unique=True)
        lines.append(numbers)
        flags.append(np.isin(numbers, np.asarray([m[0] for m in drop.miscounted], dtype=np.int64)))
    table = pa.table(
        {
            "line": np.concatenate(lines) if lines else np.empty(0, dtype=np.int64),
            "miscounted": np.concatenate(flags) if flags else np.empty(0, dtype=bool),
        }
    )
    con.register("_csv_line_arrow", table)
    con.execute("CREATE OR REPLACE TEMP TABLE _csv_line_numbers AS SELECT * FROM _csv_line_arrow")
    con.unregister("_csv_line_arrow")


def _miscounted_lines(data: bytes, delimiter: str, header_fields: int) -> list[tuple[int, str, int]]:
    """Lines with one field too many that DuckDB's CSV parser would let through: (line, text, fields).

    DuckDB reads a line ending in an extra delimiter as if the empty last field were not there;
    a strict reader calls it broken. Only lines ending in the delimiter can be such a line. Their
    fields are counted with numpy over the file's bytes (indifferent to its encoding): a delimiter
    counts unless it lies between a pair of double quotes on its line. Files whose last column is
    often empty end most lines in the delimiter, so this must not be a Python loop per line.
    """
    separator = delimiter.encode()
    if separator + b"\n" not in data and separator + b"\r\n" not in data and not data.endswith(separator):
        return []
    if len(separator) != 1:
        return _miscounted_lines_by_regex(data, separator, header_fields)
    buffer = np.frombuffer(data, dtype=np.uint8)
    newlines = np.flatnonzero(buffer == ord("\n"))
    starts = np.concatenate(([0], newlines + 1))
    ends = np.concatenate((newlines, [len(buffer)]))
    # A line's text ends before its newline and before one carriage return.
    last = np.maximum(ends - 1, 0)
    ends = np.where((ends > starts) & (buffer[last] == ord("\r")), ends - 1, ends)
    last = np.maximum(ends - 1, 0)
    candidates = (ends > starts) & (buffer[last] == separator[0])
    candidates[0] = False  # the header
    if not candidates.any():
        return []
    separators = np.flatnonzero(buffer == separator[0])
    line_of = np.searchsorted(newlines, separators)
    # Quotes are paired left to right on each line; a delimiter after an odd number of the line's
    # quotes is inside a quoted value when a closing quote follows it on the line.
    quotes = np.flatnonzero(buffer == ord('"'))
    line_start_quotes = np.searchsorted(quotes, starts)
    quotes_before = np.searchsorted(quotes, separators) - line_start_quotes[line_of]
    quotes_in_line = np.searchsorted(quotes, ends) - line_start_quotes
    quoted = (quotes_before % 2 == 1) & (quotes_before < quotes_in_line[line_of])
    fields = np.bincount(line_of[~quoted], minlength=len(starts)) + 1
    found = []
    for index in np.flatnonzero(candidates & (fields != header_fields)):
        text = data[starts[index] : ends[index]].decode("utf-8", errors="replace")
        found.append((int(index) + 1, text, int(fields[index])))
    return found


def _miscounted_lines_by_regex(data: bytes, separator: bytes, header_fields: int) -> list[tuple[int, str, int]]:
    """:func:`_miscounted_lines` for a delimiter of more than one byte (a non-ASCII character)."""
    found = []
    line, scanned = 1, 0
    for match in re.finditer(re.escape(separator) + rb"\r?$", data, re.MULTILINE):
        line += data.count(b"\n", scanned, match.start())
        scanned = match.start()
        begin = data.rfind(b"\n", 0, match.start()) + 1
        text = data[begin : match.end()].rstrip(b"\r")
        fields = re.sub(rb'"[^"]*"', b"", text).count(separator) + 1
        if line > 1 and fields != header_fields:
            found.append((line, text.decode("utf-8", errors="replace"), fields))
    return found
