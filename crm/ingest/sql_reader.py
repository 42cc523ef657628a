"""Read an entity from a SQL table by its ``updated_at`` watermark (any SQLAlchemy URL; SQLite through ADBC).

The database compares ``updated_at`` itself, so only what it can compare is selected by day: a
timestamp column, or text in ISO-8601 (``2024-01-31 ...``), which sorts by time. A row whose
``updated_at`` is empty or written otherwise (``2026/10/05``, ``05/10/2026``) cannot be placed in
the history: it is read every run by a query of its own and quarantined with the reason, never
left behind by the window's query.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import sqlalchemy as sa

from crm.ingest.entities import Entity
from crm.ingest.readers import (
    BATCH_TABLE,
    SLICE_ROWS,
    IngestError,
    ReadRequest,
    ReadResult,
    Scope,
    SourceUnavailableError,
    Window,
    _lit,
    _q,
    resolve_columns,
)
from crm.settings import EntityMapping, SqlSource


def open_source_engine(source_name: str, source: SqlSource) -> sa.Engine:
    """An engine for the source database; refuses to create an empty SQLite file where none exists."""
    url = sa.engine.make_url(source.url)
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).exists():
        raise SourceUnavailableError(
            f"source '{source_name}': database file {url.database} does not exist; check `url:` of source "
            f"'{source_name}' (a relative sqlite path resolves against the config file's folder), or mark the "
            "source `optional: true` if it may be absent"
        )
    return sa.create_engine(url)


def _text_type(engine: sa.Engine) -> str:
    return "TEXT" if engine.dialect.name in ("sqlite", "postgresql") else "VARCHAR(4000)"


def safe_url(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def _day(text: str | None) -> date | None:
    try:
        return date.fromisoformat(str(text)[:10]) if text else None
    except ValueError:
        return None


def read_sql(
    con: duckdb.DuckDBPyConnection,
    source_name: str,
    source: SqlSource,
    entity: Entity,
    mapping: EntityMapping,
    request: ReadRequest,
) -> ReadResult:
    """Rows whose ``updated_at`` falls in the window (from the watermark's day on, when incremental),
    plus every row whose ``updated_at`` cannot be compared (to quarantine)."""
    if "updated_at" not in mapping.columns or mapping.table is None:
        raise IngestError(
            f"source '{source_name}', entity '{entity.name}': a SQL entity needs `table:` and an `updated_at` "
            "column in `columns:` (the column the database updates when a row changes)"
        )
    history_start = request.history_start
    if request.window is not None:
        starts = [d for d in (request.window.start, history_start) if d is not None]
        window = Window(max(starts) if starts else None, request.window.end)
    else:
        watermark_day = _day(request.state.watermark)
        starts = [d for d in (watermark_day, history_start) if d is not None]
        window = Window(max(starts) if starts else None, None)
    result = ReadResult(scope=Scope(source_filter=f"_source = {_lit(source_name + '.' + mapping.table)}", days=window))
    try:
        engine = open_source_engine(source_name, source)
    except sa.exc.ArgumentError as exc:
        raise IngestError(f"source '{source_name}': `url:` is not a database URL ({exc})") from exc
    try:
        with engine.connect() as conn:
            _read_table(con, conn, engine, source_name, source, entity, mapping, window, history_start, result, request)
    except sa.exc.OperationalError as exc:
        raise SourceUnavailableError(
            f"source '{source_name}' ({safe_url(source.url)}): cannot read table '{mapping.table}': "
            f"{str(exc.orig or exc).strip()}"
        ) from exc
    finally:
        engine.dispose()
    return result


def _read_table(
    con, conn, engine, source_name, source, entity, mapping, window, history_start, result, request
) -> None:
    inspector = sa.inspect(conn)
    if not inspector.has_table(mapping.table):
        raise SourceUnavailableError(
            f"source '{source_name}': table '{mapping.table}' does not exist ({safe_url(source.url)}); check "
            f"`table:` of entity '{entity.name}', or mark it `optional: true` if the table may be absent"
        )
    table_columns = [c["name"] for c in inspector.get_columns(mapping.table)]
    chosen, warnings = resolve_columns(table_columns, mapping, entity, source_name, f"table '{mapping.table}'")
    result.drift_warnings.extend(warnings)
    prep = engine.dialect.identifier_preparer
    table = prep.quote(mapping.table)
    select = ", ".join(
        f"CAST({prep.quote(src)} AS {_text_type(engine)}) AS {prep.quote(canon)}"
        for canon, src in chosen.items()
        if src is not None
    )
    updated = prep.quote(chosen["updated_at"])
    as_text = f"CAST({updated} AS {_text_type(engine)})"
    # ISO-8601 text (or a timestamp the database renders as such) compares by time; nothing else does.
    comparable = (
        f"({as_text} LIKE '____-__-__%' AND substr({as_text}, 6, 2) BETWEEN '01' AND '12' "
        f"AND substr({as_text}, 9, 2) BETWEEN '01' AND '31')"
    )

    def scalar_row(sql: str) -> tuple:
        return tuple(conn.execute(sa.text(sql)).one())

    # The window's bounds are dates we made, so inlining them is safe and lets the same text run
    # through SQLAlchemy or through ADBC.
    in_window = [comparable]
    if window.start is not None:
        in_window.append(f"{updated} >= '{window.start.isoformat()}'")
    if window.end is not None:
        in_window.append(f"{updated} < '{(window.end + timedelta(days=1)).isoformat()}'")
    queries = [
        (f"SELECT {select} FROM {table} WHERE {' AND '.join(in_window)}", True),
        (f"SELECT {select} FROM {table} WHERE {updated} IS NULL OR NOT {comparable}", False),
    ]
    result.source_rows = scalar_row(f"SELECT count(*) FROM (SELECT 1 AS one FROM {table} LIMIT 1) t")[0]
    if history_start is not None and window.start == history_start:
        outside, first, last = scalar_row(
            f"SELECT count(*), min({as_text}), max({as_text}) FROM {table} "
            f"WHERE {comparable} AND {updated} < '{history_start.isoformat()}'"
        )
        result.count_outside(int(outside), _day(first), _day(last))
    # Rows stream from the database in slices of SLICE_ROWS; each slice is handed to the service
    # (``request.slice_done``) before the next is read, so memory stays flat for any window. The
    # next run starts from the newest day read. A timestamp after tomorrow is quarantined, never a watermark.
    tomorrow = date.today() + timedelta(days=1)

    def slice_read() -> None:
        newest = con.execute(
            f"SELECT max(updated_at) FROM {BATCH_TABLE} WHERE _partition_date <= $tomorrow", {"tomorrow": tomorrow}
        ).fetchall()[0][0]
        if newest is not None and (result.watermark is None or newest > result.watermark):
            result.watermark = newest
        request.slice_done()

    for query, dated in queries:
        if engine.dialect.name == "sqlite":
            slices = _sqlite_slices(engine.url.database, query)
        else:
            slices = (
                frame.to_arrow()
                for frame in pl.read_database(
                    sa.text(query),
                    connection=conn,
                    iter_batches=True,
                    batch_size=SLICE_ROWS,
                    schema_overrides={c: pl.String for c, s in chosen.items() if s is not None},
                    infer_schema_length=None,
                )
            )
        for rows in slices:
            result.rows_read += _insert_sql_rows(con, rows, chosen, entity, source_name, mapping, dated)
            slice_read()


def profile_sql(source_name: str, source: SqlSource, mapping: EntityMapping) -> dict:
    """Rows and the updated_at range of a table (for `crm check`; a full scan, never in a build)."""
    engine = open_source_engine(source_name, source)
    try:
        with engine.connect() as conn:
            prep = engine.dialect.identifier_preparer
            column = prep.quote(mapping.columns["updated_at"])
            rows, first, last = conn.execute(
                sa.text(f"SELECT count(*), min({column}), max({column}) FROM {prep.quote(mapping.table)}")
            ).one()
    finally:
        engine.dispose()
    return {"rows": int(rows), "first": _day(first), "last": _day(last)}


def _insert_sql_rows(
    con, arrow_source, chosen, entity: Entity, source_name: str, mapping: EntityMapping, dated: bool
) -> int:
    """Stream an Arrow table or batch reader of text columns into the batch table, with lineage.

    ``dated``: the rows' day is their updated_at's (as the database wrote it); else they have none.
    """
    key = entity.key[0]
    columns = ", ".join(
        (f"CAST({_q(canon)} AS VARCHAR)" if src is not None else "NULL") + f" AS {_q(canon)}"
        for canon, src in chosen.items()
    )
    day = "try_cast(left(CAST(updated_at AS VARCHAR), 10) AS DATE)" if dated else "CAST(NULL AS DATE)"
    con.register("_sql_rows", arrow_source)
    try:
        return con.execute(
            f"INSERT INTO {BATCH_TABLE} SELECT {columns}, {_lit(source_name + '.' + mapping.table)}, "
            f"{_lit(mapping.table + ':' + chosen[key] + '=')} || coalesce(CAST({_q(key)} AS VARCHAR), 'NULL'), "
            f"{day} FROM _sql_rows"
        ).fetchall()[0][0]
    finally:
        con.unregister("_sql_rows")


def _sqlite_slices(database: str, query: str) -> Iterator[pa.RecordBatchReader]:
    """SQLite through ADBC: the query's Arrow batches from the C driver, as one stream per slice of
    about SLICE_ROWS rows (no Python rows)."""
    import adbc_driver_sqlite.dbapi as adbc_sqlite

    with adbc_sqlite.connect(database) as connection, connection.cursor() as cursor:
        cursor.execute(query)
        batches = iter(cursor.fetch_record_batch())
        schema = None
        while (first := next(batches, None)) is not None:
            schema = first.schema

            def rest(batch=first) -> Iterator[pa.RecordBatch]:
                yield batch
                rows = batch.num_rows
                while rows < SLICE_ROWS and (more := next(batches, None)) is not None:
                    rows += more.num_rows
                    yield more

            yield pa.RecordBatchReader.from_batches(schema, rest())
