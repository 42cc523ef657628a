"""The normalised records kept from run to run: a nightly run normalises only what changed.

Normalising a record (:func:`crm.identity.records.normalise_records`) depends on that record's
own fields and on the settings alone, never on the other records. So the warehouse keeps, beside
the identity tables, every record as it was read (``identity.source_records``) and as it was
normalised (``identity.prepared_records``); the next run reads the records again, compares them
with the kept ones field by field (nulls equal), normalises only the new and the changed ones and
takes the others as they were. The records then go on exactly as a full run's would: numbered in
record-key order, with the external-id columns last.

The kept rows are valid only for the code and settings that made them: a fingerprint of the
normalising code (``normalise.py`` and ``records.py``), the phone library's version and the
settings is kept with them (``identity.prepared_state``); any difference, a full re-resolution
(``reresolve``) or a missing table normalises every record again.
"""

from __future__ import annotations

import hashlib
import inspect
import uuid
from dataclasses import dataclass, field

import duckdb
import phonenumbers
import polars as pl

from crm.identity import normalise as norm
from crm.identity import records as rec

SCHEMA = "identity"
SOURCE_TABLE = f"{SCHEMA}.source_records"
PREPARED_TABLE = f"{SCHEMA}.prepared_records"
STATE_TABLE = f"{SCHEMA}.prepared_state"

# The fields a source record is compared on (its key is ``rk``).
SOURCE_COLUMNS = ("rk", *rec.RECORD_SCHEMA)


def fingerprint(phone_region: str, day_first: bool) -> str:
    """What the kept normalised records depend on besides the records: the code and the settings."""
    try:
        code = inspect.getsource(norm) + inspect.getsource(rec)
    except (OSError, TypeError):  # no source to read (a frozen install): never trust kept rows
        return "unknown-" + uuid.uuid4().hex
    text = "\x1f".join([code, getattr(phonenumbers, "__version__", "?"), phone_region, str(day_first)])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


@dataclass
class PreparedDelta:
    """What the run writes back to the kept tables (in its transaction, see :func:`write_prepared`)."""

    fingerprint: str
    full: bool  # replace both tables (first run, reresolve, other code or settings)
    source: pl.DataFrame  # full: every source record; else the new and changed ones
    prepared: pl.DataFrame  # normalised rows of ``source`` (no record_id)
    removed: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"rk": pl.Utf8}))  # keys to drop
    normalised: int = 0  # records normalised in this run


def _exists(con: duckdb.DuckDBPyConnection, table: str) -> bool:
    schema, name = table.split(".")
    return bool(
        con.execute(
            "select count(*) from information_schema.tables where table_schema = ? and table_name = ?", [schema, name]
        ).fetchall()[0][0]
    )


def _stored_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    if not all(_exists(con, t) for t in (SOURCE_TABLE, PREPARED_TABLE, STATE_TABLE)):
        return None
    rows = con.execute(f"select fingerprint from {STATE_TABLE}").fetchall()
    return rows[0][0] if len(rows) == 1 else None


def prepare(
    con: duckdb.DuckDBPyConnection,
    raw: pl.DataFrame,
    phone_region: str = norm.DEFAULT_PHONE_REGION,
    *,
    day_first: bool = True,
    full: bool = False,
) -> tuple[pl.DataFrame, PreparedDelta]:
    """(prepared records exactly as :func:`crm.identity.records.prepare_records` gives them, the delta
    to keep). ``full``: normalise every record, whatever is kept."""
    keyed = rec.keyed_records(raw).select(SOURCE_COLUMNS)
    wanted = fingerprint(phone_region, day_first)
    if full or _stored_fingerprint(con) != wanted:
        prepared = rec.normalise_records(keyed, phone_region, day_first=day_first)
        delta = PreparedDelta(wanted, True, keyed, prepared, normalised=keyed.height)
        return rec.number_records(prepared), delta
    stored = rec.query_pl(con, f"select * from {SOURCE_TABLE}")
    stored = stored.select(pl.col(c).cast(keyed.schema[c]) for c in SOURCE_COLUMNS)
    changed = keyed.join(stored, on=list(SOURCE_COLUMNS), how="anti", nulls_equal=True)
    removed = stored.select("rk").join(keyed.select("rk"), on="rk", how="anti")
    con.register("_fresh_keys", pl.concat([changed.select("rk"), removed]).to_arrow())
    try:
        kept = rec.query_pl(con, f"select p.* from {PREPARED_TABLE} p anti join _fresh_keys f on f.rk = p.record_key")
    finally:
        con.unregister("_fresh_keys")
    parts = [kept]
    fresh = kept.clear()
    if changed.height:
        fresh = rec.normalise_records(changed, phone_region, day_first=day_first)
        parts.append(fresh)
    prepared = pl.concat(parts, how="diagonal_relaxed")
    # a kind of external id only removed or changed records held: a full run has no column for it
    gone = [c for c in rec.id_columns(prepared) if prepared[c].null_count() == prepared.height]
    prepared = prepared.drop(gone)
    if fresh.height:
        # the kept rows come back from the warehouse: give them the types a fresh run gives
        prepared = prepared.cast({c: t for c, t in fresh.schema.items() if c in prepared.columns})
    delta = PreparedDelta(wanted, False, changed, fresh, removed, normalised=changed.height)
    return rec.number_records(prepared), delta


def write_prepared(con: duckdb.DuckDBPyConnection, delta: PreparedDelta) -> None:
    """Keep the delta (inside the caller's transaction)."""
    con.register("_src", delta.source.to_arrow())
    con.register("_prep", delta.prepared.to_arrow())
    try:
        if delta.full:
            con.execute(f"create or replace table {SOURCE_TABLE} as select * from _src")
            con.execute(f"create or replace table {PREPARED_TABLE} as select * from _prep")
            con.execute(f"create or replace table {STATE_TABLE} (fingerprint varchar)")
            con.execute(f"insert into {STATE_TABLE} values (?)", [delta.fingerprint])
            return
        con.register("_removed", delta.removed.to_arrow())
        try:
            for table, key in ((SOURCE_TABLE, "rk"), (PREPARED_TABLE, "record_key")):
                con.execute(
                    f"delete from {table} where {key} in (select rk from _removed union all select rk from _src)"
                )
        finally:
            con.unregister("_removed")
        if delta.source.height:
            con.execute(f"insert into {SOURCE_TABLE} by name select * from _src")
            present = {r[0] for r in con.execute(f"select name from pragma_table_info('{PREPARED_TABLE}')").fetchall()}
            for column in delta.prepared.columns:
                if column not in present:  # a kind of external id no kept record has
                    con.execute(f'alter table {PREPARED_TABLE} add column "{column}" varchar')
            con.execute(f"insert into {PREPARED_TABLE} by name select * from _prep")
    finally:
        con.unregister("_src")
        con.unregister("_prep")
