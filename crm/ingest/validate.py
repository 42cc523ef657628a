"""Row rules: type every value, and send each row that breaks a rule to quarantine with the reason.

All of it is one vectorised DuckDB statement per batch, so a 50-million-row history costs seconds;
the rules come from the canonical entity (entities.py), not from per-source code.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from crm.ingest.entities import ENTITIES, LINEAGE_COLUMNS, Column, Entity
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


def _typed(column: Column) -> str:
    value = f"nullif(trim({_q(column.name)}), '')"
    if column.dtype == "VARCHAR":
        return f"nullif({_q(column.name)}, '')"
    if column.dtype == "BOOLEAN":
        return f"CASE WHEN lower({value}) IN {_TRUE} THEN true WHEN lower({value}) IN {_FALSE} THEN false END"
    if column.dtype == "TIMESTAMP":
        return f"coalesce(try_cast({value} AS TIMESTAMP), try_cast(try_cast({value} AS TIMESTAMPTZ) AS TIMESTAMP))"
    if column.dtype == "DATE":
        return f"coalesce(try_cast({value} AS DATE), try_cast(try_cast({value} AS TIMESTAMP) AS DATE))"
    return f"try_cast({value} AS {column.dtype})"


@dataclass(frozen=True)
class _Rule:
    column: str
    condition: str  # SQL true when the row breaks the rule
    message: str  # SQL expression for the reason text


def _rules(entity: Entity, con: duckdb.DuckDBPyConnection) -> list[_Rule]:
    rules: list[_Rule] = []
    for column in entity.columns:
        raw = f"nullif(trim({_q(column.name)}), '')"
        typed = f"t.{_q('__' + column.name)}"
        shown = f"'''' || {_q(column.name)} || ''''"
        if column.required:
            rules.append(_Rule(column.name, f"{raw} IS NULL", _lit(f"{column.name}: missing required value")))
        if column.dtype != "VARCHAR":
            rules.append(
                _Rule(
                    column.name,
                    f"{raw} IS NOT NULL AND {typed} IS NULL",
                    f"{_lit(column.name + ': not a valid ' + column.dtype.lower() + ' ')} || {shown}",
                )
            )
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


def split_batch(con: duckdb.DuckDBPyConnection, entity: Entity, batch_id: str, ingested_at: str) -> tuple[int, int]:
    """Insert good rows into raw.<entity> and bad ones (and reader rejects) into quarantine.<entity>.

    Returns (rows loaded, rows quarantined). Runs inside the caller's transaction.
    """
    rules = _rules(entity, con)
    typed_columns = ", ".join(f"{_typed(c)} AS {_q('__' + c.name)}" for c in entity.columns)
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
        f"{_lit(batch_id)}, _source, _source_location, _partition_date, TIMESTAMP {_lit(ingested_at)}, _source_system"
    )
    lineage_names = "_batch_id, _source, _source_location, _partition_date, _ingested_at, _source_system"
    raw_names = ", ".join(_q(c.name) for c in (*entity.columns, *LINEAGE_COLUMNS))
    quarantine_names = f"{lineage_names}, _reason, _field, _raw_record"
    loaded = con.execute(
        f"INSERT INTO raw.{entity.name} ({raw_names}) SELECT "
        + ", ".join(_q("__" + c.name) for c in entity.columns)
        + f", {lineage} FROM _ingest_checked WHERE NOT _broken"
    ).fetchall()[0][0]
    record = "to_json(struct_pack(" + ", ".join(f"{_q(c)} := {_q(c)}" for c in entity.column_names) + "))"
    quarantined = con.execute(
        f"INSERT INTO quarantine.{entity.name} ({quarantine_names}) "
        f"SELECT {lineage}, {reason}, {first_field}, {record} FROM _ingest_checked t WHERE _broken"
    ).fetchall()[0][0]
    quarantined += con.execute(
        f"INSERT INTO quarantine.{entity.name} ({quarantine_names}) "
        f"SELECT {lineage}, _reason, _field, _raw_record FROM {REJECTS_TABLE}"
    ).fetchall()[0][0]
    return loaded, quarantined
