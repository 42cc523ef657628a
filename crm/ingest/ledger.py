"""The ingestion ledger in schema ``ops``: what was read, loaded, replaced and quarantined; where sources stand.

- ``ops.ingest_batches``: one row per entity per run: the mode (incremental or an explicit window),
  the days it replaced and the days it touched, rows read / loaded / quarantined / replaced, rows
  seen before the history start (counted, not loaded), rows of erased persons suppressed (dropped at
  load, or removed later by ``crm erase``: a batch of mode ``removal``), drift warnings and notes. It
  is the independent side of the books: for every entity, the rows read by all batches minus the rows
  later batches replaced or suppressed equal the rows in raw + quarantine (``ops.ingest_reconciliation``). It is
  also the record of *what changed in each run* that the nightly incremental path builds on;
- ``ops.ingest_partition_counts``: rows per entity and day as they stand now (kept current for the
  days each batch touched), for freshness views and per-day questions;
- ``ops.loaded_files``: the manifest of files and pages loaded, with size, modification time and
  checksum: the cursor of file drops (a file not in it, or changed, is new);
- ``ops.suppressed_locations``: salted hashes of where suppressed rows came from (crm/security), so
  ``crm audit`` counts an erased person's source rows as suppressed, not as never read;
- ``ops.source_state``: the SQL watermark and the export cursor of each entity (``<entity>@<source>``
  when several sources feed the entity);
- ``ops.ingest_reconciliation``: a view the dashboard and ``crm audit`` read.
"""

from __future__ import annotations

from datetime import date

import duckdb

from crm.ingest.entities import ENTITIES
from crm.ingest.readers import LoadedUnit, ReadResult, SourceState

_DDL = """
CREATE SCHEMA IF NOT EXISTS ops;
CREATE TABLE IF NOT EXISTS ops.ingest_batches (
    batch_id VARCHAR PRIMARY KEY, entity VARCHAR, source VARCHAR, run_id VARCHAR,
    window_start DATE, window_end DATE, rows_read BIGINT, rows_loaded BIGINT, rows_quarantined BIGINT,
    files_read BIGINT, drift_warnings VARCHAR[], started_at TIMESTAMP, finished_at TIMESTAMP);
ALTER TABLE ops.ingest_batches ADD COLUMN IF NOT EXISTS mode VARCHAR;
ALTER TABLE ops.ingest_batches ADD COLUMN IF NOT EXISTS status VARCHAR;
ALTER TABLE ops.ingest_batches ADD COLUMN IF NOT EXISTS rows_replaced BIGINT DEFAULT 0;
ALTER TABLE ops.ingest_batches ADD COLUMN IF NOT EXISTS rows_outside BIGINT;
ALTER TABLE ops.ingest_batches ADD COLUMN IF NOT EXISTS outside_first DATE;
ALTER TABLE ops.ingest_batches ADD COLUMN IF NOT EXISTS outside_last DATE;
ALTER TABLE ops.ingest_batches ADD COLUMN IF NOT EXISTS days_touched DATE[];
ALTER TABLE ops.ingest_batches ADD COLUMN IF NOT EXISTS notes VARCHAR[];
ALTER TABLE ops.ingest_batches ADD COLUMN IF NOT EXISTS warnings VARCHAR[];
ALTER TABLE ops.ingest_batches ADD COLUMN IF NOT EXISTS rows_suppressed BIGINT DEFAULT 0;
CREATE TABLE IF NOT EXISTS ops.ingest_partition_counts (
    entity VARCHAR, partition_date DATE, batch_id VARCHAR,
    rows_read BIGINT, rows_loaded BIGINT, rows_quarantined BIGINT);
CREATE TABLE IF NOT EXISTS ops.loaded_files (
    entity VARCHAR, path VARCHAR, partition_date DATE, size_bytes BIGINT, sha256 VARCHAR,
    rows_read BIGINT, batch_id VARCHAR, loaded_at TIMESTAMP);
ALTER TABLE ops.loaded_files ADD COLUMN IF NOT EXISTS modified_ns BIGINT;
CREATE TABLE IF NOT EXISTS ops.source_state (
    entity VARCHAR PRIMARY KEY, watermark VARCHAR, cursor VARCHAR, cursor_date DATE, updated_at TIMESTAMP);
ALTER TABLE ops.source_state ADD COLUMN IF NOT EXISTS config_sha VARCHAR;
CREATE TABLE IF NOT EXISTS ops.suppressed_locations (entity VARCHAR, location_hash VARCHAR, batch_id VARCHAR);
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
    counted = " UNION ALL ".join(
        f"SELECT '{name}' AS entity, (SELECT count(*) FROM raw.{name}) AS rows_in_raw, "
        f"(SELECT count(*) FROM quarantine.{name}) AS rows_in_quarantine"
        for name in ENTITIES
    )
    con.execute(
        "CREATE OR REPLACE VIEW ops.ingest_reconciliation AS "
        "WITH books AS (SELECT entity, "
        "               sum(rows_read) - sum(coalesce(rows_replaced, 0)) - sum(coalesce(rows_suppressed, 0)) "
        "               AS rows_read, sum(coalesce(rows_suppressed, 0)) AS rows_suppressed, "
        "               max(finished_at) AS last_loaded_at, "
        "               arg_max(rows_outside, finished_at) FILTER (WHERE rows_outside IS NOT NULL) AS rows_outside, "
        "               arg_max(status, finished_at) AS last_status "
        "               FROM ops.ingest_batches GROUP BY entity), "
        "days AS (SELECT entity, max(partition_date) AS last_partition, count(DISTINCT partition_date) AS partitions "
        "         FROM ops.ingest_partition_counts WHERE rows_read > 0 GROUP BY entity), "
        f"counted AS ({counted}) "
        "SELECT c.entity, coalesce(b.rows_read, 0) AS rows_read, c.rows_in_raw, c.rows_in_quarantine, "
        "       coalesce(b.rows_read, 0) = c.rows_in_raw + c.rows_in_quarantine AS reconciled, "
        "       round(c.rows_in_quarantine / nullif(c.rows_in_raw + c.rows_in_quarantine, 0), 5) AS quarantine_share, "
        "       d.partitions, d.last_partition, b.last_loaded_at, "
        "       coalesce(b.rows_outside, 0) AS rows_outside_history, b.last_status, "
        "       coalesce(b.rows_suppressed, 0) AS rows_suppressed "
        "FROM counted c LEFT JOIN books b USING (entity) LEFT JOIN days d USING (entity) ORDER BY c.entity"
    )


def source_state(con: duckdb.DuckDBPyConnection, entity: str, source_filter: str = "true") -> SourceState:
    """The ledger's cursor for an entity: watermark, export cursor, and the files loaded so far."""
    rows = con.execute(
        "SELECT watermark, cursor, cursor_date, config_sha FROM ops.source_state WHERE entity = $e", {"e": entity}
    ).fetchall()
    watermark, cursor, cursor_date, config_sha = rows[0] if rows else (None, None, None, None)
    loaded = {
        path: LoadedUnit(path, day, size, modified, sha)
        for path, day, size, modified, sha in con.execute(
            "SELECT path, partition_date, size_bytes, modified_ns, sha256 FROM ops.loaded_files WHERE entity = $e",
            {"e": entity},
        ).fetchall()
    }
    return SourceState(
        watermark=watermark, cursor=cursor, cursor_date=cursor_date, loaded=loaded, config_sha=config_sha
    )


def stored_cursor(con: duckdb.DuckDBPyConnection, entity: str) -> tuple[str, date] | None:
    rows = con.execute(
        "SELECT cursor, cursor_date FROM ops.source_state WHERE entity = $e AND cursor IS NOT NULL", {"e": entity}
    ).fetchall()
    row = rows[0] if rows else None
    return (row[0], row[1]) if row else None


def refresh_day_counts(con: duckdb.DuckDBPyConnection, entity: str, batch_id: str) -> None:
    """Bring ops.ingest_partition_counts up to date for the days this batch touched (its own rows and
    the days it replaced), from raw and quarantine as they now stand."""
    touched = "(SELECT unnest(days_touched) FROM ops.ingest_batches WHERE batch_id = $batch)"
    con.execute(
        f"DELETE FROM ops.ingest_partition_counts WHERE entity = $entity AND (partition_date IN {touched} "
        "OR partition_date IS NULL)",
        {"entity": entity, "batch": batch_id},
    )
    con.execute(
        "INSERT INTO ops.ingest_partition_counts "
        "SELECT $entity, _partition_date, $batch, count(*), count(*) FILTER (WHERE _kind = 'raw'), "
        "       count(*) FILTER (WHERE _kind = 'quarantine') "
        f"FROM (SELECT _partition_date, 'raw' AS _kind FROM raw.{entity} "
        f"      UNION ALL SELECT _partition_date, 'quarantine' FROM quarantine.{entity}) "
        f"WHERE _partition_date IN {touched} OR _partition_date IS NULL GROUP BY _partition_date",
        {"entity": entity, "batch": batch_id},
    )


def record_batch(
    con: duckdb.DuckDBPyConnection,
    *,
    entity: str,
    source: str,
    batch_id: str,
    run_id: str,
    mode: str,
    status: str,
    read: ReadResult,
    loaded: int,
    quarantined: int,
    replaced: int,
    days_touched: list[date],
    started_at: str,
    finished_at: str,
    config_sha: str | None = None,
    suppressed: int = 0,
    state_key: str | None = None,
) -> None:
    """Write the ledger rows for a batch; runs in the caller's transaction, after the data.

    ``state_key`` names the cursor in ops.source_state (the entity, or ``<entity>@<source>``).
    """
    days = read.scope.days if read.scope is not None else None
    # The reader's own count is the independent side of the books: if it differs from what
    # landed, a row was lost between reading and loading, and the batch is refused.
    con.execute(
        "INSERT INTO ops.ingest_batches BY NAME SELECT $batch AS batch_id, $entity AS entity, $source AS source, "
        "$run AS run_id, $start AS window_start, $end AS window_end, $read AS rows_read, $loaded AS rows_loaded, "
        "$quarantined AS rows_quarantined, $files AS files_read, $warnings AS drift_warnings, "
        "$started AS started_at, $finished AS finished_at, $mode AS mode, $status AS status, "
        "$replaced AS rows_replaced, $outside AS rows_outside, $outside_first AS outside_first, "
        "$outside_last AS outside_last, $days AS days_touched, $notes AS notes, $other AS warnings, "
        "$suppressed AS rows_suppressed",
        {
            "batch": batch_id,
            "entity": entity,
            "source": source,
            "run": run_id,
            "start": days.start if days else None,
            "end": days.end if days else None,
            "read": read.rows_read,
            "loaded": loaded,
            "quarantined": quarantined,
            "files": len(read.files),
            "warnings": read.drift_warnings,
            "started": started_at,
            "finished": finished_at,
            "mode": mode,
            "status": status,
            "replaced": replaced,
            "outside": read.rows_outside if read.rows_outside or read.outside_first else None,
            "outside_first": read.outside_first,
            "outside_last": read.outside_last,
            "days": sorted(days_touched),
            "notes": read.notes,
            "other": read.warnings,
            "suppressed": suppressed,
        },
    )
    refresh_day_counts(con, entity, batch_id)
    if read.files:
        con.execute(
            "DELETE FROM ops.loaded_files WHERE entity = $entity AND path IN (SELECT unnest($paths))",
            {"entity": entity, "paths": [f.path for f in read.files]},
        )
        con.executemany(
            "INSERT INTO ops.loaded_files BY NAME SELECT $1 AS entity, $2 AS path, $3 AS partition_date, "
            "$4 AS size_bytes, $5 AS sha256, $6 AS rows_read, $7 AS batch_id, $8 AS loaded_at, $9 AS modified_ns",
            [
                (
                    entity,
                    f.path,
                    f.partition_date,
                    f.size_bytes,
                    f.sha256,
                    f.rows_read,
                    batch_id,
                    finished_at,
                    f.modified_ns,
                )
                for f in read.files
            ],
        )
    if read.watermark is not None or read.cursor is not None or config_sha is not None:
        con.execute(
            "INSERT INTO ops.source_state VALUES ($entity, $watermark, $cursor, $cursor_date, $now, $config) "
            "ON CONFLICT (entity) DO UPDATE SET "
            "config_sha = coalesce(excluded.config_sha, ops.source_state.config_sha), "
            "watermark = CASE WHEN excluded.watermark > coalesce(ops.source_state.watermark, '') "
            "                 THEN excluded.watermark ELSE ops.source_state.watermark END, "
            "cursor = CASE WHEN excluded.cursor IS NOT NULL AND excluded.cursor_date >= "
            "              coalesce(ops.source_state.cursor_date, DATE '0001-01-01') "
            "              THEN excluded.cursor ELSE ops.source_state.cursor END, "
            "cursor_date = greatest(excluded.cursor_date, ops.source_state.cursor_date), "
            "updated_at = excluded.updated_at",
            {
                "entity": state_key or entity,
                "watermark": read.watermark,
                "cursor": read.cursor,
                "cursor_date": read.cursor_date,
                "now": finished_at,
                "config": config_sha,
            },
        )


def record_removal(
    con: duckdb.DuckDBPyConnection, *, entity: str, rows: int, reason: str, run_id: str, at: str
) -> None:
    """Book rows removed from raw/quarantine outside ingestion (an erasure: suppressed), so the books
    still balance."""
    ensure_ledger(con)
    con.execute(
        "INSERT INTO ops.ingest_batches BY NAME SELECT $batch AS batch_id, $entity AS entity, '' AS source, "
        "$run AS run_id, 0 AS rows_read, 0 AS rows_loaded, 0 AS rows_quarantined, 0 AS files_read, "
        "$at AS started_at, $at AS finished_at, 'removal' AS mode, $reason AS status, $rows AS rows_suppressed, "
        "[]::DATE[] AS days_touched",
        {
            "batch": f"{entity}:removal:{run_id}:{at}",
            "entity": entity,
            "run": run_id,
            "at": at,
            "reason": reason,
            "rows": rows,
        },
    )
