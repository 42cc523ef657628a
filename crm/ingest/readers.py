"""Read one window of days from a source into a DuckDB temp table of untyped canonical columns.

Every reader does the same three things, whatever the source kind:
- renames the source's columns to the canonical ones (config mapping, plus known renames);
- records where each row came from (file:line, or table:key) and which day it belongs to;
- keeps rows it cannot even parse (a broken CSV or JSON line, a line in the wrong encoding) as
  *rejects* with the reason, so that nothing read is lost.

Typing and row rules are the validator's job (validate.py); readers keep every value as text.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import sqlalchemy as sa

from crm.ingest.entities import Entity
from crm.settings import EntityMapping, FileDropSource, PagedExportSource, SqlSource

BATCH_TABLE = "_ingest_batch"
REJECTS_TABLE = "_ingest_rejects"


class SchemaDriftError(ValueError):
    """A source no longer has a column the mapping needs; the message names source, file and column."""


@dataclass
class LoadedFile:
    path: str
    partition_date: date
    size_bytes: int
    sha256: str
    rows_read: int


@dataclass
class ReadResult:
    rows_read: int = 0
    drift_warnings: list[str] = field(default_factory=list)
    files: list[LoadedFile] = field(default_factory=list)
    # Resumption state after this read: the SQL watermark, or the export cursor.
    watermark: str | None = None
    cursor: str | None = None
    cursor_date: date | None = None


@dataclass(frozen=True)
class Window:
    """Inclusive range of partition days."""

    start: date
    end: date

    def contains(self, day: date) -> bool:
        return self.start <= day <= self.end


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
                f"`renames: {{<new name>: {wanted}}}` to entity '{entity.name}' in the sources config."
            )
        else:
            chosen[canonical] = None
            warnings.append(
                f"source '{source_name}', {where}: column '{wanted}' (canonical '{entity.name}.{canonical}') "
                "is missing; "
                "loaded as empty"
            )
    known = set(mapping.columns.values()) | set(mapping.renames) | set(mapping.ignore_columns)
    # Dotted JSON paths are known by their top-level field too.
    known |= {name.split(".", 1)[0] for name in known}
    for extra in sorted(present - known):
        warnings.append(f"source '{source_name}', {where}: new column '{extra}' is not mapped and was not loaded")
    return chosen, warnings


# --------------------------------------------------------------------------------------------- SQL


def read_sql(
    con: duckdb.DuckDBPyConnection,
    source_name: str,
    source: SqlSource,
    entity: Entity,
    mapping: EntityMapping,
    window: Window,
) -> ReadResult:
    """Rows whose ``updated_at`` falls in the window: the watermark is the window's upper bound."""
    if "updated_at" not in mapping.columns or mapping.table is None:
        raise SchemaDriftError(
            f"source '{source_name}', entity '{entity.name}': a SQL entity needs `table` and an `updated_at` "
            "column mapping"
        )
    engine = open_source_engine(source_name, source)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(mapping.table):
                raise SchemaDriftError(
                    f"source '{source_name}': table '{mapping.table}' does not exist ({_safe_url(source.url)})"
                )
            table_columns = [c["name"] for c in inspector.get_columns(mapping.table)]
            chosen, warnings = resolve_columns(table_columns, mapping, entity, source_name, f"table '{mapping.table}'")
            prep = engine.dialect.identifier_preparer
            select = ", ".join(
                f"CAST({prep.quote(src)} AS {_text_type(engine)}) AS {prep.quote(canon)}"
                for canon, src in chosen.items()
                if src is not None
            )
            updated = prep.quote(chosen["updated_at"])
            # The window's bounds are dates we made, so inlining them is safe and lets the same
            # text run through SQLAlchemy or through ADBC.
            query = (
                f"SELECT {select} FROM {prep.quote(mapping.table)} WHERE {updated} >= "
                f"'{window.start.isoformat()}' AND {updated} < '{(window.end + timedelta(days=1)).isoformat()}'"
            )
            if engine.dialect.name == "sqlite":
                loaded = _insert_sqlite_rows(con, engine.url.database, query, chosen, entity, source_name, mapping)
            else:
                frame = pl.read_database(
                    sa.text(query),
                    connection=conn,
                    schema_overrides={c: pl.String for c, s in chosen.items() if s is not None},
                    infer_schema_length=None,
                )
                loaded = _insert_sql_rows(con, frame.to_arrow(), chosen, entity, source_name, mapping)
    finally:
        engine.dispose()
    watermark = con.execute(f"SELECT max(updated_at) FROM {BATCH_TABLE}").fetchall()[0][0]
    return ReadResult(rows_read=loaded, drift_warnings=warnings, watermark=watermark)


def _insert_sql_rows(con, arrow_source, chosen, entity: Entity, source_name: str, mapping: EntityMapping) -> int:
    """Stream an Arrow table or batch reader of text columns into the batch table, with lineage."""
    key = entity.key[0]
    columns = ", ".join(
        (f"CAST({_q(canon)} AS VARCHAR)" if src is not None else "NULL") + f" AS {_q(canon)}"
        for canon, src in chosen.items()
    )
    con.register("_sql_rows", arrow_source)
    try:
        return con.execute(
            f"INSERT INTO {BATCH_TABLE} SELECT {columns}, {_lit(source_name + '.' + mapping.table)}, "
            f"{_lit(mapping.table + ':' + chosen[key] + '=')} || coalesce(CAST({_q(key)} AS VARCHAR), 'NULL'), "
            "try_cast(left(CAST(updated_at AS VARCHAR), 10) AS DATE) FROM _sql_rows"
        ).fetchall()[0][0]
    finally:
        con.unregister("_sql_rows")


def _insert_sqlite_rows(
    con, database: str, query: str, chosen, entity: Entity, source_name: str, mapping: EntityMapping
) -> int:
    """SQLite through ADBC: Arrow batches stream from the C driver into DuckDB, no Python rows."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    with adbc_sqlite.connect(database) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        return _insert_sql_rows(con, cursor.fetch_record_batch(), chosen, entity, source_name, mapping)


def open_source_engine(source_name: str, source: SqlSource) -> sa.Engine:
    """An engine for the source database; refuses to create an empty SQLite file where none exists."""
    url = sa.engine.make_url(source.url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        raise FileNotFoundError(f"source '{source_name}': database file {url.database} does not exist")
    return sa.create_engine(url)


def _text_type(engine: sa.Engine) -> str:
    return "TEXT" if engine.dialect.name in ("sqlite", "postgresql") else "VARCHAR(4000)"


def _safe_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


# ------------------------------------------------------------------------------------- file drops


def _file_date(relative: str, pattern: str) -> date | None:
    prefix, _, suffix = pattern.partition("{date}")
    if not (relative.startswith(prefix) and relative.endswith(suffix)):
        return None
    try:
        return date.fromisoformat(relative[len(prefix) : len(relative) - len(suffix)])
    except ValueError:
        return None


def list_drop_files(source: FileDropSource, mapping: EntityMapping) -> list[tuple[Path, date | None]]:
    """Files of this entity with the day they were dropped for (None for a single-file source)."""
    if mapping.pattern is None:
        return []
    if mapping.single_file:
        path = source.path / mapping.pattern
        return [(path, None)] if path.exists() else []
    found = []
    for path in sorted(source.path.glob(mapping.pattern.replace("{date}", "*"))):
        day = _file_date(path.relative_to(source.path).as_posix(), mapping.pattern)
        if day is not None:
            found.append((path, day))
    return found


def read_file_drop(
    con: duckdb.DuckDBPyConnection,
    source_name: str,
    source: FileDropSource,
    entity: Entity,
    mapping: EntityMapping,
    window: Window,
    undated_day: date,
) -> ReadResult:
    """Files dropped for days in the window (for a single-file source: its rows dated in it).

    Files with the same header are read in one DuckDB scan (two years of daily drops are ~730
    files), keeping each row's file and physical line.
    """
    result = ReadResult()
    by_header: dict[tuple[str, ...], list[_DropFile]] = {}
    for path, day in list_drop_files(source, mapping):
        if day is not None and not window.contains(day):
            continue
        relative = path.relative_to(source.path).as_posix()
        data = path.read_bytes()
        header = _csv_header(data, source.delimiter)
        _, warnings = resolve_columns(header, mapping, entity, source_name, f"file '{relative}'")
        result.drift_warnings.extend(warnings)
        drop = _DropFile(
            path,
            relative,
            day,
            hashlib.sha256(data).hexdigest(),
            len(data),
            _miscounted_lines(data, source.delimiter, len(header)),
        )
        by_header.setdefault(tuple(header), []).append(drop)
    for header, files in by_header.items():
        chosen, _ = resolve_columns(list(header), mapping, entity, source_name, f"file '{files[0].relative}'")
        rows_by_file = _load_csv_files(
            con, source_name, source, entity, mapping, list(header), chosen, files, window, undated_day
        )
        for drop in files:
            rows = rows_by_file.get(drop.relative, 0)
            result.rows_read += rows
            result.files.append(LoadedFile(drop.relative, drop.day or window.end, drop.size, drop.sha256, rows))
    return result


@dataclass
class _DropFile:
    path: Path
    relative: str
    day: date | None  # None: a single file holding the whole history
    sha256: str
    size: int
    miscounted: list[tuple[int, str, int]]  # (line, text, fields) DuckDB would let through


def _csv_header(data: bytes, delimiter: str) -> list[str]:
    first = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").lstrip("\ufeff").rstrip("\r")
    return next(csv.reader(io.StringIO(first), delimiter=delimiter), [])


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
        path = str(drop.path)
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
    """Lines with one field too many that DuckDB's CSV parser would let through.

    DuckDB reads a line ending in an extra delimiter as if the empty last field were not there;
    a strict reader calls it broken. Only lines ending in the delimiter can be such a line, so a
    byte-level search (indifferent to the file's encoding) finds the few candidates to count.
    """
    separator = delimiter.encode()
    if separator + b"\n" not in data and separator + b"\r\n" not in data and not data.endswith(separator):
        return []
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


def _load_csv_files(
    con: duckdb.DuckDBPyConnection,
    source_name: str,
    source: FileDropSource,
    entity: Entity,
    mapping: EntityMapping,
    header: list[str],
    chosen: dict[str, str | None],
    files: list[_DropFile],
    window: Window,
    undated_day: date,
) -> dict[str, int]:
    """Load files sharing one header into the batch tables; rows read per file (relative path)."""
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _csv_files (file_path VARCHAR, relative VARCHAR, day DATE, source VARCHAR)"
    )
    con.executemany(
        "INSERT INTO _csv_files VALUES ($1, $2, $3, $4)",
        [(str(f.path), f.relative, f.day, f"{source_name}:{f.relative}") for f in files],
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _csv_miscounted (file_path VARCHAR, line BIGINT, l VARCHAR, fields BIGINT)"
    )
    miscounted = [(str(f.path), line, text, n) for f in files for line, text, n in f.miscounted]
    if miscounted:
        con.executemany("INSERT INTO _csv_miscounted VALUES ($1, $2, $3, $4)", miscounted)
    columns = "{" + ", ".join(f"{_lit(h)}: 'VARCHAR'" for h in header) + "}"
    con.execute("DROP TABLE IF EXISTS _csv_rejects; DROP TABLE IF EXISTS _csv_reject_scans")
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _csv_rows AS SELECT * FROM read_csv($paths, header=true, delim=$delim, "
        f"quote='\"', escape='\"', auto_detect=false, columns={columns}, filename='_csv_file_path', "
        "store_rejects=true, rejects_table='_csv_rejects', rejects_scan='_csv_reject_scans', strict_mode=true)",
        {"paths": [str(f.path) for f in files], "delim": source.delimiter},
    )
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _csv_rejected AS "
        "SELECT s.file_path, r.line, string_agg(DISTINCT r.error_type, ', ') AS errors, "
        "       any_value(r.error_message) AS message, any_value(r.csv_line) AS l "
        "FROM _csv_rejects r JOIN _csv_reject_scans s USING (scan_id, file_id) GROUP BY ALL"
    )
    con.execute("DELETE FROM _csv_miscounted WHERE (file_path, line) IN (SELECT (file_path, line) FROM _csv_rejected)")
    _number_parsed_lines(con, files)
    select = ", ".join((f"r.{_q(src)}" if src else "NULL") + f" AS {_q(canon)}" for canon, src in chosen.items())
    if not mapping.columns.get("order_id") and entity.name == "sales_orders":
        # A minimal orders file may have no order id: the file position identifies the row.
        select = select.replace('NULL AS "order_id"', "f.relative || ':' || l.line AS \"order_id\"")
    date_source = chosen.get(mapping.date_column or "")
    # A single file with all history: a row belongs to the day of its date column. A row whose
    # date cannot be read (and a line that cannot be parsed) is kept under the first day of the
    # history, a fixed day, so re-running any window never loads it twice.
    undated = f"DATE {_lit(undated_day.isoformat())}"
    partition = (
        f"coalesce(f.day, try_cast(left(trim(r.{_q(date_source)}), 10) AS DATE), {undated})"
        if date_source
        else f"coalesce(f.day, {undated})"
    )
    in_window = f"BETWEEN DATE {_lit(window.start.isoformat())} AND DATE {_lit(window.end.isoformat())}"
    con.execute(
        f"INSERT INTO {BATCH_TABLE} SELECT * FROM ("
        f"  SELECT {select}, f.source AS _source, f.relative || ':' || l.line AS _source_location, "
        f"         {partition} AS _partition_date "
        "  FROM _csv_rows r POSITIONAL JOIN _csv_line_numbers l "
        "  JOIN _csv_files f ON f.file_path = r._csv_file_path "
        "  WHERE NOT l.miscounted"
        f") WHERE _partition_date {in_window}"
    )
    con.execute(
        f"INSERT INTO {REJECTS_TABLE} SELECT * FROM ("
        f"  SELECT f.source, f.relative || ':' || x.line, coalesce(f.day, {undated}) AS day, x.reason, NULL, x.l FROM ("
        "    SELECT file_path, line, 'broken CSV line: ' || errors || ' (' || message || ')' AS reason, l "
        "    FROM _csv_rejected "
        "    UNION ALL SELECT file_path, line, 'broken CSV line: ' || fields || ' fields where the header has ' "
        f"              || {len(header)}, l FROM _csv_miscounted"
        f"  ) x JOIN _csv_files f USING (file_path)) WHERE day {in_window}"
    )
    counted = dict(
        con.execute(
            "SELECT _source, count(*) FROM ("
            f"  SELECT _source FROM {BATCH_TABLE} UNION ALL SELECT _source FROM {REJECTS_TABLE}"
            ") WHERE _source IN (SELECT source FROM _csv_files) GROUP BY ALL"
        ).fetchall()
    )
    return {f.relative: counted.get(f"{source_name}:{f.relative}", 0) for f in files}


# ------------------------------------------------------------------------------ paged JSON export


def _page_header(path: Path) -> dict:
    with path.open("rb") as handle:
        return orjson.loads(handle.readline())


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


def walk_pages(source: PagedExportSource, start_cursor: str) -> Iterator[tuple[str, Path, dict]]:
    """Follow the export's cursor chain: (cursor, page file, header) until end_of_stream."""
    cursor = start_cursor
    seen: set[str] = set()
    while cursor not in seen:
        seen.add(cursor)
        path = source.path / f"{cursor}.jsonl"
        if not path.exists():
            return
        header = _page_header(path)
        yield cursor, path, header
        if header.get("end_of_stream"):
            return
        cursor = header["after_cursor"]


def read_paged_export(
    con: duckdb.DuckDBPyConnection,
    source_name: str,
    source: PagedExportSource,
    entity: Entity,
    mapping: EntityMapping,
    window: Window,
    resume: tuple[str, date] | None,
) -> ReadResult:
    """Pages of the window, found by following the cursor chain.

    ``resume`` is the stored (next cursor, day of the last page read). A nightly run resumes
    there instead of walking the whole chain; a re-run of older days walks from the first cursor.
    """
    start_cursor = source.first_cursor
    if resume is not None and resume[1] < window.start:
        start_cursor = resume[0]
    result = ReadResult()
    page = _PageRows()
    for cursor, path, header in walk_pages(source, start_cursor):
        day = date.fromisoformat(header["export_date"])
        if day > window.end:
            break
        # The stored cursor names the next page to read after the last one read.
        result.cursor, result.cursor_date = header.get("after_cursor") or cursor, day
        if day < window.start:
            continue
        relative = path.relative_to(source.path).as_posix()
        data = path.read_bytes()
        page_rows, page_keys = page.read(data, relative, day, f"{source_name}:{relative}")
        # A page whose every line is broken (they go to quarantine) has no columns to check.
        if page_keys:
            _, warnings = resolve_columns(sorted(page_keys), mapping, entity, source_name, f"page '{relative}'")
            result.drift_warnings.extend(warnings)
        result.rows_read += page_rows
        result.files.append(LoadedFile(relative, day, len(data), hashlib.sha256(data).hexdigest(), page_rows))
        if len(page.records) >= _PAGE_FLUSH_ROWS:
            page.flush(con, mapping, entity)
    page.flush(con, mapping, entity)
    return result


# Parsed tickets are handed to DuckDB in slices of this many, so memory stays flat for any history.
_PAGE_FLUSH_ROWS = 100_000


class _PageRows:
    """Records parsed from export pages, with where each came from; unparseable lines as rejects."""

    def __init__(self) -> None:
        self._start_over()

    def _start_over(self) -> None:
        self.records: list[dict] = []
        self.sources: list[str] = []
        self.locations: list[str] = []
        self.days: list[date] = []
        self.rejects: list[tuple] = []

    def read(self, data: bytes, relative: str, day: date, source: str) -> tuple[int, set[str]]:
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
