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
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

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


# The records this run read, keyed and deduplicated (a temp table of the run's connection): change
# detection happens inside DuckDB, and a full run sets them aside in a file for SOURCE_TABLE, so the
# company's source records never sit in Python beside their normalised form.
READ_TABLE = "_identity_read_records"


@dataclass
class PreparedDelta:
    """What the run writes back to the kept tables (in its transaction, see :func:`write_prepared`)."""

    fingerprint: str
    full: bool  # replace both tables (first run, reresolve, other code or settings)
    source: pl.DataFrame | None  # the new and changed source records (None when full: see source_file)
    # normalised rows of the records normalised in this run, no record_id (None when full: see prepared_file)
    prepared: pl.DataFrame | None
    removed: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema={"rk": pl.Utf8}))  # keys to drop
    normalised: int = 0  # records normalised in this run
    # full: every source record and every normalised row, set aside in Parquet files until the write.
    # Held as frames, they would keep every column of the company in memory for the whole run,
    # the match keys the run drops once the profiles hold them included.
    source_file: Path | None = None
    prepared_file: Path | None = None

    def discard(self) -> None:
        """Remove the set-aside files (written, or the run failed)."""
        if self.source_file is not None:
            shutil.rmtree(self.source_file.parent, ignore_errors=True)
            self.source_file = None
            self.prepared_file = None


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


def _read_records(con: duckdb.DuckDBPyConnection, raw: pl.DataFrame | None) -> None:
    """READ_TABLE: the source records (staging's, or ``raw`` when given) as :func:`records.keyed_records`
    keys them: one row per record key, typed as :data:`records.RECORD_SCHEMA`."""
    if raw is None:
        source = f"({rec.RECORDS_SQL})"
    else:
        con.register("_identity_raw", raw.to_arrow())
        source = "_identity_raw"
    typed = ", ".join(
        f"cast({c} as timestamp) as {c}" if t == pl.Datetime("us") else f"cast({c} as varchar) as {c}"
        for c, t in rec.RECORD_SCHEMA.items()
    )
    try:
        con.execute(
            f"""create or replace temp table {READ_TABLE} as
                select source || ':' || source_system || ':' || source_key as rk, *
                from (select {typed} from {source})
                qualify row_number() over (partition by rk) = 1"""
        )
    finally:
        if raw is not None:
            con.unregister("_identity_raw")


def prepare(
    con: duckdb.DuckDBPyConnection,
    raw: pl.DataFrame | None = None,
    phone_region: str = norm.DEFAULT_PHONE_REGION,
    *,
    day_first: bool = True,
    full: bool = False,
) -> tuple[pl.DataFrame, PreparedDelta]:
    """(prepared records exactly as :func:`crm.identity.records.prepare_records` gives them, the delta
    to keep). The records are staging's (``raw``: these instead). ``full``: normalise every record,
    whatever is kept."""
    _read_records(con, raw)
    columns = ", ".join(SOURCE_COLUMNS)
    wanted = fingerprint(phone_region, day_first)
    if full or _stored_fingerprint(con) != wanted:
        # one file serves both: normalised now, and written to SOURCE_TABLE at the end of the run
        source_file = Path(tempfile.mkdtemp(prefix="crm_identity_source_")) / "source_records.parquet"
        con.execute(
            f"copy (select {columns} from {READ_TABLE} order by rk nulls first) to '{source_file}' (format parquet)"
        )
        con.execute(f"drop table {READ_TABLE}")
        keyed = pl.read_parquet(source_file)
        prepared = rec.number_records(rec.normalise_records(keyed, phone_region, day_first=day_first))
        prepared_file = source_file.with_name("prepared_records.parquet")
        prepared.drop("record_id").write_parquet(prepared_file)
        delta = PreparedDelta(
            wanted,
            True,
            None,
            None,
            normalised=keyed.height,
            source_file=source_file,
            prepared_file=prepared_file,
        )
        return prepared, delta
    # set difference: nulls compare equal, so a record whose fields all match a kept one is unchanged
    changed = rec.query_pl(
        con, f"select {columns} from {READ_TABLE} except select {columns} from {SOURCE_TABLE} order by rk nulls first"
    )
    changed = changed.cast({c: t for c, t in rec.RECORD_SCHEMA.items() if c in changed.columns})
    removed = rec.query_pl(con, f"select rk from {SOURCE_TABLE} anti join {READ_TABLE} using (rk)")
    con.execute(f"drop table {READ_TABLE}")  # the changes are known: its memory goes to the rest of the run
    fresh = rec.normalise_records(changed, phone_region, day_first=day_first) if changed.height else None
    con.register("_fresh_keys", pl.concat([changed.select("rk"), removed]).to_arrow())
    try:
        kept = rec.query_pl(
            con,
            f"select p.* from {PREPARED_TABLE} p anti join _fresh_keys f on f.rk = p.record_key "
            "order by p.record_key nulls first",
        )
    finally:
        con.unregister("_fresh_keys")
    parts = [kept.drop("record_id", strict=False)]
    if fresh is not None:
        parts.append(fresh)
    prepared = pl.concat(parts, how="diagonal_relaxed") if len(parts) > 1 else parts[0]
    del kept, parts
    # a kind of external id only removed or changed records held: a full run has no column for it
    gone = [c for c in rec.id_columns(prepared) if prepared[c].null_count() == prepared.height]
    prepared = prepared.drop(gone)
    if fresh is not None:
        # the kept rows come back from the warehouse: give them the types a fresh run gives
        prepared = prepared.cast({c: t for c, t in fresh.schema.items() if c in prepared.columns})
    else:
        fresh = prepared.clear()
    delta = PreparedDelta(wanted, False, changed, fresh, removed, normalised=changed.height)
    return rec.number_records(prepared), delta


def write_prepared(con: duckdb.DuckDBPyConnection, delta: PreparedDelta) -> None:
    """Keep the delta (inside the caller's transaction, on the connection :func:`prepare` read with)."""
    if delta.full:
        con.execute(f"create or replace table {SOURCE_TABLE} as select * from read_parquet('{delta.source_file}')")
        con.execute(f"create or replace table {PREPARED_TABLE} as select * from read_parquet('{delta.prepared_file}')")
        delta.discard()
        con.execute(f"create or replace table {STATE_TABLE} (fingerprint varchar)")
        con.execute(f"insert into {STATE_TABLE} values (?)", [delta.fingerprint])
        return
    with rec.frame_view(con, "_prep", delta.prepared):
        con.register("_src", delta.source.to_arrow())
        con.register("_removed", delta.removed.to_arrow())
        try:
            for table, key in ((SOURCE_TABLE, "rk"), (PREPARED_TABLE, "record_key")):
                con.execute(
                    f"delete from {table} where {key} in (select rk from _removed union all select rk from _src)"
                )
            if delta.source.height:
                con.execute(f"insert into {SOURCE_TABLE} by name select * from _src")
                present = {
                    r[0] for r in con.execute(f"select name from pragma_table_info('{PREPARED_TABLE}')").fetchall()
                }
                for column in delta.prepared.columns:
                    if column not in present:  # a kind of external id no kept record has
                        con.execute(f'alter table {PREPARED_TABLE} add column "{column}" varchar')
                con.execute(f"insert into {PREPARED_TABLE} by name select * from _prep")
        finally:
            con.unregister("_src")
            con.unregister("_removed")
