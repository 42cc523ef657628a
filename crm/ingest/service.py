"""Load one entity for one window of days: read, validate, replace the window, record, all or nothing.

Plain Python over a DuckDB connection, so tests and benchmarks can call it without Dagster; the
Dagster asset (assets.py) is a thin wrapper that adds the checks and the metadata.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb

from crm.ingest.entities import ENTITIES, EXTERNAL_IDS, Column, Entity
from crm.ingest.ledger import (
    GROUPED_REASON_SQL,
    create_reconciliation_view,
    ensure_ledger,
    record_batch,
    stored_cursor,
)
from crm.ingest.readers import (
    BATCH_TABLE,
    REJECTS_TABLE,
    ReadResult,
    Window,
    create_batch_tables,
    read_file_drop,
    read_paged_export,
    read_sql,
)
from crm.ingest.validate import ensure_entity_tables, split_batch
from crm.security.suppression import suppress_batch
from crm.settings import EntityMapping, FileDropSource, PagedExportSource, Settings, Source, SqlSource


@dataclass
class IngestReport:
    entity: str
    source: str | None
    batch_id: str
    window: Window
    rows_read: int
    rows_parsed: int  # rows the readers handed to validation (parsed rows + unparseable lines)
    rows_loaded: int
    rows_quarantined: int
    files_read: int
    rows_suppressed: int = 0  # rows of persons erased with `crm erase`, dropped before raw/quarantine
    drift_warnings: list[str] = field(default_factory=list)
    quarantine_reasons: dict[str, int] = field(default_factory=dict)

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
    window: Window,
    *,
    first_partition: date,
    run_id: str = "manual",
) -> IngestReport:
    """Replace the window's days of ``raw.<entity>`` and ``quarantine.<entity>`` with a fresh read.

    Everything happens in one transaction: a failure (a schema change, an unreachable source)
    leaves the warehouse exactly as the last good run left it.
    """
    entity = ENTITIES[entity_name]
    located = settings.sources_of(entity_name)
    source_name = ", ".join(name for name, _, _ in located) or None
    batch_id = f"{entity_name}:{window.start}:{window.end}:{uuid.uuid4().hex[:12]}"
    started_at = _now()
    con.execute("SET TimeZone = 'UTC'")
    ensure_ledger(con)
    _ensure_tables_naming_systems(con, entity, located)
    # Reading fills connection-local temp tables only, so it stays outside the transaction.
    read = _read_every_source(con, entity, located, window, first_partition)
    parsed = con.execute(
        f"SELECT (SELECT count(*) FROM {BATCH_TABLE}) + (SELECT count(*) FROM {REJECTS_TABLE})"
    ).fetchall()[0][0]
    # Erased persons stay erased: their rows are dropped here and counted as suppressed in the ledger.
    suppressed = suppress_batch(con, entity_name, settings.data_dir, BATCH_TABLE, REJECTS_TABLE, entity.column_names)
    con.execute("BEGIN TRANSACTION")
    try:
        window_params = {"start": window.start, "end": window.end}
        for schema in ("raw", "quarantine"):
            con.execute(
                f"DELETE FROM {schema}.{entity_name} WHERE _partition_date BETWEEN $start AND $end", window_params
            )
        loaded, quarantined = split_batch(con, entity, batch_id, started_at)
        record_batch(
            con,
            entity=entity_name,
            source=source_name or "",
            batch_id=batch_id,
            run_id=run_id,
            window=window,
            read=read,
            loaded=loaded,
            quarantined=quarantined,
            started_at=started_at,
            finished_at=_now(),
        )
        reasons = dict(
            con.execute(
                f"SELECT {GROUPED_REASON_SQL} AS reason, "
                f"count(*) FROM quarantine.{entity_name} WHERE _batch_id = $b GROUP BY reason ORDER BY 2 DESC LIMIT 20",
                {"b": batch_id},
            ).fetchall()
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return IngestReport(
        entity=entity_name,
        source=source_name,
        batch_id=batch_id,
        window=window,
        rows_read=read.rows_read,
        rows_parsed=parsed,
        rows_loaded=loaded,
        rows_quarantined=quarantined,
        rows_suppressed=sum(suppressed.values()),
        files_read=len(read.files),
        drift_warnings=read.drift_warnings,
        quarantine_reasons=reasons,
    )


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


def _read_every_source(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    located: list[tuple[str, Source, EntityMapping]],
    window: Window,
    first_partition: date,
) -> ReadResult:
    """Read each source of the entity into the batch tables, every row tagged with its source's name.

    One source (the usual case) is read straight into the batch tables; several are read one after
    another and stacked.
    """
    total = ReadResult()
    parts = []
    for index, (name, source, mapping) in enumerate(located):
        reading_entity, reading_mapping = _with_id_columns(entity, mapping)
        create_batch_tables(con, reading_entity)
        # The export cursor is kept per entity: with several exports each walks its own chain.
        resume = stored_cursor(con, entity.name) if len(located) == 1 else None
        read = _read_source(con, name, source, reading_entity, reading_mapping, window, first_partition, resume)
        _fold_external_ids(con, mapping)
        for table in (BATCH_TABLE, REJECTS_TABLE):
            con.execute(f"ALTER TABLE {table} ADD COLUMN _source_system VARCHAR DEFAULT {_sql_text(name)}")
        if len(located) > 1:
            for table in (BATCH_TABLE, REJECTS_TABLE):
                con.execute(f"ALTER TABLE {table} RENAME TO {table}_{index}")
            parts.append(index)
            read = dataclasses.replace(read, cursor=None, cursor_date=None)
        total.rows_read += read.rows_read
        total.drift_warnings.extend(read.drift_warnings)
        total.files.extend(read.files)
        total.watermark = max(filter(None, [total.watermark, read.watermark]), default=None)
        total.cursor, total.cursor_date = read.cursor or total.cursor, read.cursor_date or total.cursor_date
    if not located:
        create_batch_tables(con, entity)
        for table in (BATCH_TABLE, REJECTS_TABLE):
            con.execute(f"ALTER TABLE {table} ADD COLUMN _source_system VARCHAR")
    if parts:
        for table in (BATCH_TABLE, REJECTS_TABLE):
            stacked = " UNION ALL BY NAME ".join(f"SELECT * FROM {table}_{i}" for i in parts)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {stacked}")
            for i in parts:
                con.execute(f"DROP TABLE {table}_{i}")
    return total


def _read_source(con, name, source, entity, mapping, window, first_partition, resume) -> ReadResult:
    if isinstance(source, SqlSource):
        return read_sql(con, name, source, entity, mapping, window)
    if isinstance(source, FileDropSource):
        return read_file_drop(con, name, source, entity, mapping, window, first_partition)
    if isinstance(source, PagedExportSource):
        return read_paged_export(con, name, source, entity, mapping, window, resume)
    return ReadResult()


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


def refresh_reconciliation(con: duckdb.DuckDBPyConnection) -> list[dict]:
    """Make sure every entity's tables and the ledger exist, refresh ``ops.ingest_reconciliation`` and
    return its rows (what `crm audit` prints): rows read = rows in raw + rows in quarantine."""
    ensure_ledger(con)
    for entity in ENTITIES.values():
        ensure_entity_tables(con, entity)
    create_reconciliation_view(con)
    return (
        con.sql("SELECT entity, rows_read, rows_in_raw, rows_in_quarantine, reconciled FROM ops.ingest_reconciliation")
        .pl()
        .to_dicts()
    )
