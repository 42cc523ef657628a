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
import re
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import duckdb
import orjson
import polars as pl
import sqlalchemy as sa

from pipelines.defs.ingest.entities import Entity
from pipelines.settings import EntityMapping, FileDropSource, PagedExportSource, SqlSource

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

    def days(self) -> Iterator[date]:
        day = self.start
        while day <= self.end:
            yield day
            day += timedelta(days=1)


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
                f"source '{source_name}', {where}: column '{wanted}' (canonical '{entity.name}.{canonical}') is missing; "
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
            f"source '{source_name}', entity '{entity.name}': a SQL entity needs `table` and an `updated_at` column mapping"
        )
    engine = open_source_engine(source_name, source)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            if not inspector.has_table(mapping.table):
                raise SchemaDriftError(f"source '{source_name}': table '{mapping.table}' does not exist ({_safe_url(source.url)})")
            table_columns = [c["name"] for c in inspector.get_columns(mapping.table)]
            chosen, warnings = resolve_columns(table_columns, mapping, entity, source_name, f"table '{mapping.table}'")
            key_source = chosen[entity.key[0]]
            prep = engine.dialect.identifier_preparer
            select = ", ".join(
                f"CAST({prep.quote(src)} AS {_text_type(engine)}) AS {prep.quote(canon)}"
                for canon, src in chosen.items()
                if src is not None
            )
            updated = prep.quote(chosen["updated_at"])
            query = sa.text(
                f"SELECT {select} FROM {prep.quote(mapping.table)} "
                f"WHERE {updated} >= :start AND {updated} < :end ORDER BY {updated}"
            )
            params = {
                "start": window.start.isoformat(),
                "end": (window.end + timedelta(days=1)).isoformat(),
            }
            frame = pl.read_database(
                query,
                connection=conn,
                execute_options={"parameters": params},
                schema_overrides={c: pl.String for c, s in chosen.items() if s is not None},
                infer_schema_length=None,
            )
    finally:
        engine.dispose()
    for canon, src in chosen.items():
        if src is None:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(canon))
    frame = frame.select(entity.column_names).with_columns(
        pl.lit(f"{source_name}.{mapping.table}").alias("_source"),
        (pl.lit(f"{mapping.table}:{key_source}=") + pl.col(entity.key[0]).fill_null("NULL")).alias("_source_location"),
        pl.col("updated_at").str.slice(0, 10).str.to_date(strict=False).alias("_partition_date"),
    )
    con.register("_sql_frame", frame.to_arrow())
    con.execute(f"INSERT INTO {BATCH_TABLE} SELECT * FROM _sql_frame")
    con.unregister("_sql_frame")
    watermark = frame["updated_at"].max() if frame.height else None
    return ReadResult(rows_read=frame.height, drift_warnings=warnings, watermark=watermark)


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


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _csv_header(path: Path, delimiter: str) -> list[str]:
    with path.open("rb") as handle:
        first = handle.readline().decode("utf-8", errors="replace").lstrip("\ufeff")
    return next(csv.reader(io.StringIO(first), delimiter=delimiter), [])


def read_file_drop(
    con: duckdb.DuckDBPyConnection,
    source_name: str,
    source: FileDropSource,
    entity: Entity,
    mapping: EntityMapping,
    window: Window,
    undated_day: date,
) -> ReadResult:
    """Files dropped for days in the window (all of a single-file source's rows dated in it)."""
    result = ReadResult()
    for path, day in list_drop_files(source, mapping):
        if day is not None and not window.contains(day):
            continue
        relative = path.relative_to(source.path).as_posix()
        rows = _load_csv_file(con, source_name, source, entity, mapping, path, relative, day, window, undated_day, result)
        result.rows_read += rows
        result.files.append(LoadedFile(relative, day or window.end, path.stat().st_size, _sha256(path), rows))
    return result


def _load_csv_file(
    con: duckdb.DuckDBPyConnection,
    source_name: str,
    source: FileDropSource,
    entity: Entity,
    mapping: EntityMapping,
    path: Path,
    relative: str,
    day: date | None,
    window: Window,
    undated_day: date,
    result: ReadResult,
) -> int:
    header = _csv_header(path, source.delimiter)
    chosen, warnings = resolve_columns(header, mapping, entity, source_name, f"file '{relative}'")
    result.drift_warnings.extend(warnings)
    columns = "{" + ", ".join(f"{_lit(h)}: 'VARCHAR'" for h in header) + "}"
    con.execute("DROP TABLE IF EXISTS _csv_rejects; DROP TABLE IF EXISTS _csv_reject_scans")
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _csv_file AS SELECT * FROM read_csv($path, header=true, delim=$delim, "
        f"quote='\"', escape='\"', auto_detect=false, columns={columns}, store_rejects=true, "
        "rejects_table='_csv_rejects', rejects_scan='_csv_reject_scans', strict_mode=true)",
        {"path": str(path), "delim": source.delimiter},
    )
    good = con.execute("SELECT count(*) FROM _csv_file").fetchall()[0][0]
    rejected_lines = con.execute("SELECT count(DISTINCT line) FROM _csv_rejects").fetchall()[0][0]
    # A parsed row's physical line is the k-th line (from 2, after the header) that was not rejected.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _csv_lines AS "
        "SELECT row_number() OVER (ORDER BY line) - 1 AS ordinal, line FROM ("
        f"  SELECT range AS line FROM range(2, {good + rejected_lines + 2})"
        "  EXCEPT SELECT DISTINCT line FROM _csv_rejects)"
    )
    _find_miscounted_lines(con, path, source.delimiter, len(header))
    select = ", ".join(
        (f"f.{_q(src)}" if src else "NULL") + f" AS {_q(canon)}" for canon, src in chosen.items()
    )
    if not mapping.columns.get("order_id") and entity.name == "sales_orders":
        # A minimal orders file may have no order id: the file position identifies the row.
        select = select.replace('NULL AS "order_id"', f"{_lit(relative)} || ':' || l.line AS \"order_id\"")
    location = f"{_lit(relative)} || ':' || l.line"
    if day is not None:
        partition = f"DATE {_lit(day.isoformat())}"
        rejects_day = day
    else:
        # One file with all history: a row belongs to the day of its date column. A row whose
        # date cannot be read (and a line that cannot be parsed) is kept under the first day of
        # the history, a fixed day, so re-running any window never loads it twice.
        rejects_day = undated_day
        date_source = chosen.get(mapping.date_column or "")
        partition = f"DATE {_lit(rejects_day.isoformat())}"
        if date_source:
            partition = f"coalesce(try_cast(left(trim(f.{_q(date_source)}), 10) AS DATE), {partition})"
    inserted = con.execute(
        f"INSERT INTO {BATCH_TABLE} SELECT * FROM ("
        f"  SELECT {select}, {_lit(source_name + ':' + relative)} AS _source, {location} AS _source_location, "
        f"         {partition} AS _partition_date "
        "  FROM (SELECT rowid AS ordinal, * FROM _csv_file) f JOIN _csv_lines l USING (ordinal)"
        "  WHERE l.line NOT IN (SELECT line FROM _csv_miscounted)"
        f") WHERE _partition_date BETWEEN DATE {_lit(window.start.isoformat())} AND DATE {_lit(window.end.isoformat())}"
    ).fetchall()[0][0]
    if not window.contains(rejects_day):
        return inserted
    con.execute(
        f"INSERT INTO {REJECTS_TABLE} SELECT {_lit(source_name + ':' + relative)}, "
        f"{_lit(relative)} || ':' || line, DATE {_lit(rejects_day.isoformat())}, "
        "'broken CSV line: ' || string_agg(DISTINCT error_type, ', ') || ' (' || any_value(error_message) || ')', "
        "NULL, any_value(csv_line) FROM _csv_rejects GROUP BY line "
        f"UNION ALL SELECT {_lit(source_name + ':' + relative)}, {_lit(relative)} || ':' || line, "
        f"DATE {_lit(rejects_day.isoformat())}, 'broken CSV line: ' || fields || ' fields where the header has ' "
        f"|| {len(header)}, NULL, l FROM _csv_miscounted"
    )
    miscounted = con.execute("SELECT count(*) FROM _csv_miscounted").fetchall()[0][0]
    return inserted + rejected_lines + miscounted


def _find_miscounted_lines(con: duckdb.DuckDBPyConnection, path: Path, delimiter: str, header_fields: int) -> None:
    """Lines with one field too many that DuckDB's parser let through, into ``_csv_miscounted``.

    DuckDB reads a line ending in an extra delimiter as if the empty last field were not there;
    a strict reader calls it broken. Only lines ending in the delimiter can be such a line, so a
    byte-level search (indifferent to the file's encoding) finds the few candidates to count.
    """
    separator = delimiter.encode()
    found: list[tuple[int, str, int]] = []
    data = path.read_bytes()
    line, scanned = 1, 0
    for match in re.finditer(re.escape(separator) + rb"\r?$", data, re.MULTILINE):
        line += data.count(b"\n", scanned, match.start())
        scanned = match.start()
        begin = data.rfind(b"\n", 0, match.start()) + 1
        text = data[begin : match.end()].rstrip(b"\r")
        fields = re.sub(rb'"[^"]*"', b"", text).count(separator) + 1
        if line > 1 and fields != header_fields:
            found.append((line, text.decode("utf-8", errors="replace"), fields))
    con.execute("CREATE OR REPLACE TEMP TABLE _csv_miscounted (line BIGINT, l VARCHAR, fields BIGINT)")
    if found:
        con.executemany("INSERT INTO _csv_miscounted VALUES ($1, $2, $3)", found)
    con.execute("DELETE FROM _csv_miscounted WHERE line IN (SELECT line FROM _csv_rejects)")




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
        page_rows, page_keys = page.read(path, relative, day, f"{source_name}:{relative}")
        _, warnings = resolve_columns(sorted(page_keys), mapping, entity, source_name, f"page '{relative}'")
        result.drift_warnings.extend(warnings)
        result.rows_read += page_rows
        result.files.append(LoadedFile(relative, day, path.stat().st_size, _sha256(path), page_rows))
    frame = page.mapped_frame(mapping, entity)
    if frame.height:
        con.register("_page_frame", frame.to_arrow())
        con.execute(f"INSERT INTO {BATCH_TABLE} SELECT * FROM _page_frame")
        con.unregister("_page_frame")
    if page.rejects:
        reject_frame = pl.DataFrame(
            page.rejects,
            schema={"_source": pl.String, "_source_location": pl.String, "_partition_date": pl.Date,
                    "_reason": pl.String, "_field": pl.String, "_raw_record": pl.String},
            orient="row",
        )
        con.register("_page_rejects", reject_frame.to_arrow())
        con.execute(f"INSERT INTO {REJECTS_TABLE} SELECT * FROM _page_rejects")
        con.unregister("_page_rejects")
    return result


class _PageRows:
    """Records parsed from export pages, with where each came from; unparseable lines as rejects."""

    def __init__(self) -> None:
        self.records: list[dict] = []
        self.sources: list[str] = []
        self.locations: list[str] = []
        self.days: list[date] = []
        self.rejects: list[tuple] = []

    def read(self, path: Path, relative: str, day: date, source: str) -> tuple[int, set[str]]:
        """Parse one page's ticket lines; returns (rows read, field names seen)."""
        keys_seen: set[str] = set()
        count = 0
        with path.open("rb") as handle:
            handle.readline()  # the page header
            for line_number, line in enumerate(handle, start=2):
                if not line.strip():
                    continue
                count += 1
                where = f"{relative}:{line_number}"
                try:
                    record = orjson.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                except (orjson.JSONDecodeError, ValueError) as exc:
                    text = line.decode("utf-8", errors="replace").rstrip("\n")
                    self.rejects.append((source, where, day, f"broken JSON line: {exc}", None, text))
                    continue
                keys_seen.update(_flat_keys(record))
                self.records.append(record)
                self.sources.append(source)
                self.locations.append(where)
                self.days.append(day)
        return count, keys_seen

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
