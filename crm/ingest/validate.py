"""Row rules: type every value, and send each row that breaks a rule to quarantine with the reason.

All of it is one vectorised DuckDB statement per slice of a batch, so a 50-million-row history costs seconds;
the rules come from the canonical entity (entities.py), not from per-source code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

import duckdb

from crm.ingest.entities import ENTITIES, LINEAGE_COLUMNS, Column, Entity
from crm.ingest.formats import (
    ABSURD_MAGNITUDE,
    PLAUSIBLE_FROM,
    date_sql,
    format_for,
    number_sql,
    plausible_until,
    timestamp_sql,
    unreadable_date_reason,
)
from crm.ingest.readers import BATCH_TABLE, REJECTS_TABLE, _lit, _q

QUARANTINE_COLUMNS = (
    "_batch_id VARCHAR, _source VARCHAR, _source_location VARCHAR, _partition_date DATE, "
    "_ingested_at TIMESTAMP, _reason VARCHAR, _field VARCHAR, _raw_record VARCHAR, _source_system VARCHAR"
)
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


def ensure_entity_tables(con: duckdb.DuckDBPyConnection, entity: Entity) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS raw; CREATE SCHEMA IF NOT EXISTS quarantine")
    columns = ", ".join(f"{_q(c.name)} {c.dtype}" for c in (*entity.columns, *LINEAGE_COLUMNS))
    con.execute(f"CREATE TABLE IF NOT EXISTS raw.{entity.name} ({columns})")
    con.execute(f"CREATE TABLE IF NOT EXISTS quarantine.{entity.name} ({QUARANTINE_COLUMNS})")
    # A warehouse made before a column was declared gains it (empty for the rows already there).
    existing = {
        (schema, name)
        for schema, name in con.execute(
            "SELECT table_schema, column_name FROM information_schema.columns WHERE table_name = $t",
            {"t": entity.name},
        ).fetchall()
    }
    for column in (*entity.columns, *LINEAGE_COLUMNS):
        if ("raw", column.name) not in existing:
            con.execute(f"ALTER TABLE raw.{entity.name} ADD COLUMN {_q(column.name)} {column.dtype}")
    if ("quarantine", "_source_system") not in existing:
        con.execute(f"ALTER TABLE quarantine.{entity.name} ADD COLUMN _source_system VARCHAR")


@dataclass(frozen=True)
class RowFormats:
    """What the source declared about how it writes values (see crm/ingest/formats.py)."""

    date_formats: dict[str, str] | str | None = None
    decimal: str = "."
    # Names the entity and source in reasons, so a reason says where to declare a format.
    where: str = ""
    # The column that places a row in the history (a SQL updated_at, a single file's date column):
    # a row the reader could not place in a day (``_partition_date`` null) goes to quarantine.
    placement_column: str | None = None
    placement_hint: str = "it cannot be read as a date"


def _typed(column: Column, formats: RowFormats = RowFormats()) -> str:
    value = f"nullif(trim({_q(column.name)}), '')"
    if column.dtype == "VARCHAR":
        return f"nullif({_q(column.name)}, '')"
    if column.dtype == "BOOLEAN":
        return f"CASE WHEN lower({value}) IN {_TRUE} THEN true WHEN lower({value}) IN {_FALSE} THEN false END"
    if column.dtype == "TIMESTAMP":
        return timestamp_sql(value, format_for(formats.date_formats, column.name))
    if column.dtype == "DATE":
        return date_sql(value, format_for(formats.date_formats, column.name))
    return number_sql(value, column.dtype, formats.decimal)


@dataclass(frozen=True)
class _Rule:
    column: str
    condition: str  # SQL true when the row breaks the rule
    message: str  # SQL expression for the reason text


def _type_rules(column: Column, formats: RowFormats, raw: str, typed: str, shown: str) -> list[_Rule]:
    """The value must be of the column's type, and a plausible one: a real time, a finite number."""
    if column.dtype == "VARCHAR":
        return []
    if column.dtype in ("TIMESTAMP", "DATE"):
        fmt = format_for(formats.date_formats, column.name)
        until = plausible_until()
        tomorrow = until.date() - timedelta(days=1)
        earliest, latest = _lit(PLAUSIBLE_FROM.isoformat()), _lit(until.isoformat(sep=" "))
        bounds = f"{typed} < DATE {earliest} OR {typed} >= TIMESTAMP {latest}"
        return [
            _Rule(
                column.name,
                f"{raw} IS NOT NULL AND {typed} IS NULL",
                unreadable_date_reason(column.name, shown, raw, fmt, formats.where, column.dtype),
            ),
            _Rule(
                column.name,
                f"NOT isfinite({typed}) OR {bounds}",
                f"{_lit(column.name + ': ')} || {shown} || "
                + _lit(f" is not a plausible time (before {PLAUSIBLE_FROM} or after tomorrow, {tomorrow})"),
            ),
        ]
    rules = [
        _Rule(
            column.name,
            f"{raw} IS NOT NULL AND {typed} IS NULL",
            f"{_lit(column.name + ': not a valid ' + column.dtype.lower() + ' ')} || {shown}"
            + (
                " || " + _lit(" (numbers here are written with a decimal comma, as declared)")
                if formats.decimal == ","
                else ""
            ),
        )
    ]
    if column.dtype == "DOUBLE":
        rules += [
            _Rule(
                column.name,
                f"NOT isfinite({typed})",
                f"{_lit(column.name + ': ')} || {shown} || ' is not a finite number'",
            ),
            _Rule(
                column.name,
                f"isfinite({typed}) AND abs({typed}) >= {ABSURD_MAGNITUDE:g}",
                f"{_lit(column.name + ': ')} || {shown} || "
                + _lit(f" is implausibly large (|value| >= {ABSURD_MAGNITUDE:g})"),
            ),
        ]
    return rules


def _placement_rules(column: Column, formats: RowFormats, raw: str, typed: str, shown: str) -> list[_Rule]:
    """A row the reader could not place in a day: say why, unless another rule already does (a value
    missing where one is required, a value that is no date at all)."""
    rules = []
    if not column.required:
        rules.append(
            _Rule(
                column.name,
                f"_partition_date IS NULL AND {raw} IS NULL",
                _lit(f"{column.name}: missing, so the row cannot be placed in the history"),
            )
        )
    rules.append(
        _Rule(
            column.name,
            f"_partition_date IS NULL AND {raw} IS NOT NULL AND {typed} IS NOT NULL",
            f"{_lit(column.name + ': ')} || {shown} || "
            + _lit(" cannot place the row in the history: " + formats.placement_hint),
        )
    )
    return rules


def _rules(entity: Entity, con: duckdb.DuckDBPyConnection, formats: RowFormats = RowFormats()) -> list[_Rule]:
    rules: list[_Rule] = []
    for column in entity.columns:
        raw = f"nullif(trim({_q(column.name)}), '')"
        typed = f"t.{_q('__' + column.name)}"
        shown = f"'''' || {_q(column.name)} || ''''"
        if column.required:
            rules.append(_Rule(column.name, f"{raw} IS NULL", _lit(f"{column.name}: missing required value")))
        if column.name == formats.placement_column:
            rules += _placement_rules(column, formats, raw, typed, shown)
        rules += _type_rules(column, formats, raw, typed, shown)
        if column.accepted_values:
            allowed = "(" + ", ".join(_lit(v.lower()) for v in column.accepted_values) + ")"
            rules.append(
                _Rule(
                    column.name,
                    f"{typed} IS NOT NULL AND lower(trim(CAST({typed} AS VARCHAR))) NOT IN {allowed}",
                    f"{_lit(column.name + ': unknown value ')} || {shown} || "
                    f"{_lit(' (expected one of ' + ', '.join(column.accepted_values) + ')')}",
                )
            )
        if column.min_value is not None:
            rules.append(
                _Rule(
                    column.name,
                    f"{typed} < {column.min_value}",
                    f"{_lit(column.name + ': ')} || {shown} || {_lit(f' is below the minimum {column.min_value:g}')}",
                )
            )
        if column.max_value is not None:
            rules.append(
                _Rule(
                    column.name,
                    f"{typed} > {column.max_value}",
                    f"{_lit(column.name + ': ')} || {shown} || {_lit(f' is above the maximum {column.max_value:g}')}",
                )
            )
        if column.references and _reference_available(con, column.references):
            target_entity, target_column = column.references.split(".")
            rules.append(
                _Rule(
                    column.name,
                    f"{typed} IS NOT NULL AND {typed} NOT IN (SELECT {_q(target_column)} FROM raw.{target_entity})",
                    f"{_lit(column.name + ': unknown ' + column.references + ' ')} || {shown}",
                )
            )
    if entity.identified_by:
        present = " OR ".join(f"nullif(trim({_q(c)}), '') IS NOT NULL" for c in entity.identified_by)
        rules.append(
            _Rule(
                entity.identified_by[0],
                f"NOT ({present})",
                _lit(f"no identifier: one of {', '.join(entity.identified_by)} is needed"),
            )
        )
    return rules


def _reference_available(con: duckdb.DuckDBPyConnection, reference: str) -> bool:
    """A reference is only checked when the referenced entity has been loaded at all."""
    target_entity = reference.split(".")[0]
    if target_entity not in ENTITIES:
        return False
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'raw' AND table_name = $t",
        {"t": target_entity},
    ).fetchall()[0][0]
    return bool(exists) and con.execute(f"SELECT count(*) > 0 FROM raw.{target_entity}").fetchall()[0][0]


def stage_slice(
    con: duckdb.DuckDBPyConnection,
    entity: Entity,
    batch_id: str,
    ingested_at: str,
    raw_path: str,
    quarantine_path: str,
    formats: RowFormats = RowFormats(),
) -> tuple[int, int]:
    """Apply the row rules to the batch tables (one slice of a batch) and write the good rows, typed,
    to ``raw_path`` and the bad ones (and the reader's rejects) to ``quarantine_path`` (Parquet, in
    the columns of raw.<entity> and quarantine.<entity>), each with the reason.

    Returns (rows for raw, rows for quarantine). Nothing is written to the warehouse: the service
    inserts the staged slices in the batch's one transaction, after the blocking checks.
    """
    rules = _rules(entity, con, formats)
    typed_columns = ", ".join(f"{_typed(c, formats)} AS {_q('__' + c.name)}" for c in entity.columns)
    reason = (
        "nullif(concat_ws('; ', " + ", ".join(f"CASE WHEN {r.condition} THEN {r.message} END" for r in rules) + "), '')"
        if rules
        else "CAST(NULL AS VARCHAR)"
    )
    first_field = (
        "coalesce(" + ", ".join(f"CASE WHEN {r.condition} THEN {_lit(r.column)} END" for r in rules) + ")"
        if rules
        else "CAST(NULL AS VARCHAR)"
    )
    # Flag first, explain later: the reason text is built only for the few rows that need one.
    broken = " OR ".join(f"coalesce({r.condition}, false)" for r in rules) if rules else "false"
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _ingest_checked AS "
        f"SELECT t.*, {broken} AS _broken FROM (SELECT *, {typed_columns} FROM {BATCH_TABLE}) t"
    )
    lineage = (
        f"{_lit(batch_id)} AS _batch_id, _source, _source_location, _partition_date, "
        f"TIMESTAMP {_lit(ingested_at)} AS _ingested_at, _source_system"
    )
    typed = ", ".join(f"{_q('__' + c.name)} AS {_q(c.name)}" for c in entity.columns)
    record = "to_json(struct_pack(" + ", ".join(f"{_q(c)} := {_q(c)}" for c in entity.column_names) + "))"
    try:
        loaded = _copy(con, f"SELECT {typed}, {lineage} FROM _ingest_checked WHERE NOT _broken", raw_path)
        quarantined = _copy(
            con,
            f"SELECT {lineage}, {reason} AS _reason, {first_field} AS _field, CAST({record} AS VARCHAR) AS _raw_record "
            "FROM _ingest_checked t WHERE _broken "
            f"UNION ALL SELECT {lineage}, _reason, _field, _raw_record FROM {REJECTS_TABLE}",
            quarantine_path,
        )
    finally:
        con.execute("DROP TABLE IF EXISTS _ingest_checked")
    return loaded, quarantined


def _copy(con: duckdb.DuckDBPyConnection, query: str, path: str) -> int:
    """Write a query's rows to a Parquet file (in the query's order); the rows written."""
    return con.execute(f"COPY ({query}) TO {_lit(path)} (FORMAT parquet)").fetchall()[0][0]
