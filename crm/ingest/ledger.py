"""The ingestion ledger in schema ``ops``: what was read, loaded and quarantined, and where each source stands.

- ``ops.ingest_batches``: one row per asset run (entity, window, counts, drift warnings);
- ``ops.ingest_partition_counts``: rows read / loaded / quarantined per entity and day, replaced with
  the day's data, so the reconciliation stays exact when a day is re-run;
- ``ops.loaded_files``: the manifest of files and pages loaded, with checksums;
- ``ops.source_state``: the SQL watermark and the export cursor of each entity;
- ``ops.ingest_reconciliation``: a view the dashboard and ``crm audit`` read: for every entity,
  rows read = rows in raw + rows in quarantine.
"""

from __future__ import annotations

from datetime import date

import duckdb

from crm.ingest.entities import ENTITIES
from crm.ingest.readers import ReadResult, Window

_DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.ingest_batches (
    batch_id VARCHAR PRIMARY KEY, entity VARCHAR, source VARCHAR, run_id VARCHAR,
    window_start DATE, window_end DATE, rows_read BIGINT, rows_loaded BIGINT, rows_quarantined BIGINT,
    files_read BIGINT, drift_warnings VARCHAR[], started_at TIMESTAMP, finished_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS ops.ingest_partition_counts (
    entity VARCHAR, partition_date DATE, batch_id VARCHAR,
    rows_read BIGINT, rows_loaded BIGINT, rows_quarantined BIGINT);
-- Rows of erased persons (crm erase): dropped at load or deleted later, never silently lost.
ALTER TABLE ops.ingest_partition_counts ADD COLUMN IF NOT EXISTS rows_suppressed BIGINT DEFAULT 0;
CREATE TABLE IF NOT EXISTS ops.loaded_files (
    entity VARCHAR, path VARCHAR, partition_date DATE, size_bytes BIGINT, sha256 VARCHAR,
    rows_read BIGINT, batch_id VARCHAR, loaded_at TIMESTAMP);
CREATE TABLE IF NOT EXISTS ops.source_state (
    entity VARCHAR PRIMARY KEY, watermark VARCHAR, cursor VARCHAR, cursor_date DATE, updated_at TIMESTAMP);
"""


# A quarantine reason with its quoted values replaced, so that reasons group ("'abc' is not a date"
# and "'xyz' is not a date" count as one). Shared by the ingest report, `crm audit` and the app.
GROUPED_REASON_SQL = "regexp_replace(_reason, '''[^'']*''', '<value>', 'g')"


def quarantine_reasons_sql(entities: list[str]) -> str:
    """Rows per (entity, grouped reason) over the given quarantine tables, most frequent first."""
    if not entities:
        return "SELECT NULL::VARCHAR AS entity, NULL::VARCHAR AS reason, 0::BIGINT AS rows WHERE false"
    union = " UNION ALL ".join(
        f"SELECT '{entity}' AS entity, {GROUPED_REASON_SQL} AS reason FROM quarantine.\"{entity}\""
        for entity in entities
    )
    return f"SELECT entity, reason, count(*) AS rows FROM ({union}) GROUP BY ALL ORDER BY rows DESC"


# A reason on a field that identifies a person (or on an unnamed field) may quote the person's value:
# a sample keeps that reason with the value replaced (the location points at the row for whoever may
# open the source).
_PERSON_FIELD_SQL = "email|phone|name|postcode|address|birth|customer_ref|source_key|record_key"
_EMAIL_IN_TEXT_SQL = "([A-Za-z0-9._%+\\-])[A-Za-z0-9._%+\\-]*@([A-Za-z0-9\\-]+(?:\\.[A-Za-z0-9\\-]+)*\\.[A-Za-z]{2,})"


def quarantine_samples_sql(columns: dict[str, frozenset[str] | set[str]], entities: list[str]) -> str:
    """Every quarantined row's pointer over the given quarantine tables (those with
    ``_source_location`` and ``_reason``): entity, location (file:line or table:key), field, reason
    (a person's value in it replaced, emails masked), the grouped reason, and ``sample``: its rank
    within (entity, grouped reason) by location."""
    union = " UNION ALL ".join(
        f"SELECT '{e}' AS entity, _source_location AS location, "
        f"{'_field' if '_field' in columns.get(f'quarantine.{e}', ()) else 'NULL::VARCHAR'} AS field, "
        f'_reason, {GROUPED_REASON_SQL} AS grouped FROM quarantine."{e}"'
        for e in entities
    )
    reason = (
        f"regexp_replace(CASE WHEN field IS NULL OR regexp_matches(field, '{_PERSON_FIELD_SQL}', 'i') THEN grouped "
        f"ELSE _reason END, '{_EMAIL_IN_TEXT_SQL}', '\\1***@\\2', 'g')"
    )
    return (
        f"SELECT entity, location, field, {reason} AS reason, grouped, "
        f"row_number() OVER (PARTITION BY entity, grouped ORDER BY location) AS sample FROM ({union})"
    )


def ensure_ledger(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(_DDL)


def create_reconciliation_view(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create the reconciliation view over every entity's raw and quarantine tables."""
    ensure_ledger(con)  # a ledger from before suppression gains its rows_suppressed column
    counted = " UNION ALL ".join(
        f"SELECT '{name}' AS entity, (SELECT count(*) FROM raw.{name}) AS rows_in_raw, "
        f"(SELECT count(*) FROM quarantine.{name}) AS rows_in_quarantine"
        for name in ENTITIES
    )
    con.execute(
        "CREATE OR REPLACE VIEW ops.ingest_reconciliation AS "
        "WITH ledger AS (SELECT entity, sum(rows_read) AS rows_read, max(partition_date) AS last_partition, "
        "               coalesce(sum(rows_suppressed), 0) AS rows_suppressed, "
        "               count(DISTINCT partition_date) AS partitions "
        "               FROM ops.ingest_partition_counts GROUP BY entity), "
        f"counted AS ({counted}) "
        "SELECT c.entity, coalesce(l.rows_read, 0) AS rows_read, c.rows_in_raw, c.rows_in_quarantine, "
        "       coalesce(l.rows_read, 0) = c.rows_in_raw + c.rows_in_quarantine + coalesce(l.rows_suppressed, 0) "
        "       AS reconciled, "
        "       round(c.rows_in_quarantine / nullif(c.rows_in_raw + c.rows_in_quarantine, 0), 5) AS quarantine_share, "
        "       l.partitions, l.last_partition, coalesce(l.rows_suppressed, 0) AS rows_suppressed, "
        "       (SELECT max(finished_at) FROM ops.ingest_batches b WHERE b.entity = c.entity) AS last_loaded_at "
        "FROM counted c LEFT JOIN ledger l USING (entity) ORDER BY c.entity"
    )


def stored_cursor(con: duckdb.DuckDBPyConnection, entity: str) -> tuple[str, date] | None:
    rows = con.execute(
        "SELECT cursor, cursor_date FROM ops.source_state WHERE entity = $e AND cursor IS NOT NULL", {"e": entity}
    ).fetchall()
    row = rows[0] if rows else None
    return (row[0], row[1]) if row else None


def record_batch(
    con: duckdb.DuckDBPyConnection,
    *,
    entity: str,
    source: str,
    batch_id: str,
    run_id: str,
    window: Window,
    read: ReadResult,
    loaded: int,
    quarantined: int,
    started_at: str,
    finished_at: str,
) -> None:
    """Write the ledger rows for a batch; runs in the caller's transaction, after the data."""
    params = {"entity": entity, "start": window.start, "end": window.end}
    con.execute(
        "DELETE FROM ops.ingest_partition_counts WHERE entity = $entity AND partition_date BETWEEN $start AND $end",
        params,
    )
    # Suppressed rows (crm erase) come from the temp table the suppression step left for this batch.
    suppressed = (
        " UNION ALL SELECT _partition_date, 'suppressed', rows FROM _ingest_suppressed"
        if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = '_ingest_suppressed'").fetchall()[0][0]
        else ""
    )
    con.execute(
        "INSERT INTO ops.ingest_partition_counts "
        "(entity, partition_date, batch_id, rows_read, rows_loaded, rows_quarantined, rows_suppressed) "
        "SELECT $entity, _partition_date, $batch, sum(_n), coalesce(sum(_n) FILTER (WHERE _kind = 'raw'), 0), "
        "       coalesce(sum(_n) FILTER (WHERE _kind = 'quarantine'), 0), "
        "       coalesce(sum(_n) FILTER (WHERE _kind = 'suppressed'), 0) "
        "FROM (SELECT _partition_date, 'raw' AS _kind, 1 AS _n FROM raw." + entity + " WHERE _batch_id = $batch "
        "      UNION ALL SELECT _partition_date, 'quarantine', 1 FROM quarantine."
        + entity
        + " WHERE _batch_id = $batch"
        + suppressed
        + ") GROUP BY _partition_date",
        {"entity": entity, "batch": batch_id},
    )
    # The reader's own count is the independent side of the books: if it differs from what
    # landed, a row was lost between reading and loading, and the asset check fails.
    con.execute(
        "INSERT INTO ops.ingest_batches VALUES ($batch, $entity, $source, $run, $start, $end, $read, $loaded, "
        "$quarantined, $files, $warnings, $started, $finished)",
        {
            "batch": batch_id,
            "entity": entity,
            "source": source,
            "run": run_id,
            "start": window.start,
            "end": window.end,
            "read": read.rows_read,
            "loaded": loaded,
            "quarantined": quarantined,
            "files": len(read.files),
            "warnings": read.drift_warnings,
            "started": started_at,
            "finished": finished_at,
        },
    )
    if read.files:
        con.execute(
            "DELETE FROM ops.loaded_files WHERE entity = $entity AND partition_date BETWEEN $start AND $end", params
        )
        con.executemany(
            "INSERT INTO ops.loaded_files VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            [
                (entity, f.path, f.partition_date, f.size_bytes, f.sha256, f.rows_read, batch_id, finished_at)
                for f in read.files
            ],
        )
    if read.watermark is not None or read.cursor is not None:
        con.execute(
            "INSERT INTO ops.source_state VALUES ($entity, $watermark, $cursor, $cursor_date, $now) "
            "ON CONFLICT (entity) DO UPDATE SET "
            "watermark = CASE WHEN excluded.watermark > coalesce(ops.source_state.watermark, '') "
            "                 THEN excluded.watermark ELSE ops.source_state.watermark END, "
            "cursor = CASE WHEN excluded.cursor_date >= coalesce(ops.source_state.cursor_date, DATE '0001-01-01') "
            "              THEN excluded.cursor ELSE ops.source_state.cursor END, "
            "cursor_date = greatest(excluded.cursor_date, ops.source_state.cursor_date), "
            "updated_at = excluded.updated_at",
            {
                "entity": entity,
                "watermark": read.watermark,
                "cursor": read.cursor,
                "cursor_date": read.cursor_date,
                "now": finished_at,
            },
        )
