"""Load one entity for one window of days: read, validate, replace the window, record, all or nothing.

Plain Python over a DuckDB connection, so tests and benchmarks can call it without Dagster; the
Dagster asset (assets.py) is a thin wrapper that adds the checks and the metadata.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import duckdb

from crm.ingest.entities import ENTITIES
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
from crm.settings import FileDropSource, PagedExportSource, Settings, SqlSource


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
    located = settings.source_of(entity_name)
    source_name = located[0] if located else None
    batch_id = f"{entity_name}:{window.start}:{window.end}:{uuid.uuid4().hex[:12]}"
    started_at = _now()
    con.execute("SET TimeZone = 'UTC'")
    ensure_ledger(con)
    ensure_entity_tables(con, entity)
    # Reading fills connection-local temp tables only, so it stays outside the transaction.
    create_batch_tables(con, entity)
    read = ReadResult()
    if located is not None:
        _, source, mapping = located
        if isinstance(source, SqlSource):
            read = read_sql(con, source_name, source, entity, mapping, window)
        elif isinstance(source, FileDropSource):
            read = read_file_drop(con, source_name, source, entity, mapping, window, first_partition)
        elif isinstance(source, PagedExportSource):
            read = read_paged_export(con, source_name, source, entity, mapping, window, stored_cursor(con, entity_name))
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
