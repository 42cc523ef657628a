"""What `crm audit` prints: the books of every entity, and the sources checked against what they hold.

Two independent reconciliations, both needed:

* **the books**: for each entity, rows read by all batches minus rows later replaced = rows in raw +
  rows in quarantine (``ops.ingest_reconciliation``): nothing lost between reading and loading;
* **the sources**: every file in a drop folder (matched by a pattern or not), every page file of an
  export and every row of a SQL table is either loaded (its lines all read), or named here with
  why not: new since the last build, dated before the history start, changed since it was
  loaded, or never read at all. So "0 read of a non-empty file" or a file nobody reads can never
  show as reconciled.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa

from crm.ingest.entities import ENTITIES
from crm.ingest.file_reader import list_drop_files, unread_files
from crm.ingest.history import history_start
from crm.ingest.ledger import quarantine_reasons_sql
from crm.ingest.page_reader import page_header_day
from crm.ingest.service import ledger_state_key, refresh_reconciliation
from crm.ingest.sql_reader import open_source_engine
from crm.security.suppression import erasure_key, location_hash
from crm.settings import FileDropSource, PagedExportSource, Settings, SqlSource


@dataclass(frozen=True)
class Finding:
    source: str
    entity: str | None
    what: str  # the file, page or table (and key)
    status: str  # not loaded yet | before the history start | changed since loaded | partly read | never read
    detail: str
    loss: bool  # True: rows the pipeline should have read and did not

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _lines(path) -> int:
    return sum(1 for line in path.read_bytes().split(b"\n")[1:] if line.strip())


def read_audit(settings: Settings) -> dict:
    path = settings.warehouse_path
    if not path.exists():
        raise FileNotFoundError(f"No warehouse at {path}.")
    # The view is recreated on every build; a write connection refreshes it if an entity is new.
    with settings.connect_warehouse() as con:
        tables = {
            r[0]
            for r in con.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables").fetchall()
        }
        if "ops.ingest_batches" not in tables:
            raise FileNotFoundError(f"The warehouse at {path} has no ingestion ledger yet.")
        refresh_reconciliation(con)
        entities = con.sql("SELECT * FROM ops.ingest_reconciliation").pl().to_dicts()
        reasons = con.sql(quarantine_reasons_sql(list(ENTITIES))).pl().to_dicts()
        loaded = con.sql("SELECT entity, path, size_bytes, rows_read FROM ops.loaded_files").pl()
        watermarks = dict(con.execute("SELECT entity, watermark FROM ops.source_state").fetchall())
        findings = _source_findings(settings, con, loaded, watermarks)
    return {
        "warehouse": str(path),
        "entities": entities,
        "quarantine_reasons": reasons,
        "source_findings": [f.as_dict() for f in findings],
        "files_not_loaded": [f"{f.entity or f.source}: {f.what}" for f in findings if f.status != "partly read"],
        "reconciled": all(row["reconciled"] for row in entities) and not any(f.loss for f in findings),
    }


def _source_findings(settings: Settings, con, loaded: pl.DataFrame, watermarks: dict) -> list[Finding]:
    findings: list[Finding] = []
    start = history_start(settings)
    suppressed = _suppressed_locations(settings, con)
    for source_name, source in settings.sources.items():
        if isinstance(source, FileDropSource) and source.path.is_dir():
            findings += _drop_findings(source_name, source, start, loaded)
        elif isinstance(source, PagedExportSource) and source.path.is_dir():
            for entity in source.entities:
                for page in sorted(source.path.glob("*.jsonl")):
                    relative = page.relative_to(source.path).as_posix()
                    findings += _file_finding(source_name, entity, page, relative, page_header_day(page), start, loaded)
        elif isinstance(source, SqlSource):
            for entity, mapping in source.entities.items():
                watermark = watermarks.get(ledger_state_key(settings, entity, source_name))
                findings += _sql_findings(con, source_name, source, entity, mapping, start, watermark, suppressed)
    return findings


def _drop_findings(source_name: str, source: FileDropSource, start, loaded: pl.DataFrame) -> list[Finding]:
    findings = [
        Finding(
            source_name,
            None,
            relative,
            "never read",
            "no entity's pattern matches this file (list it in `ignore_files` if that is intended)",
            True,
        )
        for relative in unread_files(source)
    ]
    for entity, mapping in source.entities.items():
        listing = list_drop_files(source, mapping)
        files = [(p, d) for p, d in listing.dated] + ([(listing.single, None)] if listing.single else [])
        files += [(p, None) for p, _ in listing.near_misses]
        for file_path, day in files:
            relative = file_path.relative_to(source.path).as_posix()
            findings += _file_finding(source_name, entity, file_path, relative, day, start, loaded)
    return findings


def _file_finding(source_name, entity, file_path, relative, day, start, loaded: pl.DataFrame) -> list[Finding]:
    rows = loaded.filter((pl.col("entity") == entity) & (pl.col("path") == relative))
    lines = _lines(file_path)
    if rows.height == 0:
        if lines == 0:
            return []
        if start is not None and day is not None and day < start:
            return [
                Finding(source_name, entity, relative, "before the history start", f"{lines} line(s), day {day}", False)
            ]
        return [
            Finding(
                source_name,
                entity,
                relative,
                "not loaded yet",
                f"{lines} line(s); the next `crm build` reads it (unless no cursor chain reaches it)",
                False,
            )
        ]
    size, read = rows["size_bytes"][0], rows["rows_read"][0]
    if size != file_path.stat().st_size:
        return [
            Finding(source_name, entity, relative, "changed since loaded", f"{read} of now {lines} line(s) read", False)
        ]
    if read != lines:
        return [Finding(source_name, entity, relative, "partly read", f"{read} of {lines} line(s) read", True)]
    return []


def _suppressed_locations(settings: Settings, con) -> tuple[str, set[str]] | None:
    """The erasure key and the hashed origins of rows suppressed for erased persons (None: no erasure)."""
    key = erasure_key(settings.data_dir)
    if key is None:
        return None
    return key, {h for (h,) in con.execute("SELECT location_hash FROM ops.suppressed_locations").fetchall()}


def _sql_findings(con, source_name, source, entity, mapping, start, watermark, suppressed) -> list[Finding]:
    """Every row of the table should have been read once (its location is in raw or quarantine, or it
    was suppressed: an erased person's row)."""
    if mapping.table is None or "updated_at" not in mapping.columns:
        return []
    key_column = ENTITIES[entity].key[0]
    key_source = mapping.columns.get(key_column)
    try:
        engine = open_source_engine(source_name, source)
    except Exception:  # noqa: BLE001 - an unreachable source is what `crm check` reports; nothing to audit
        return []
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(mapping.table):
                return []
            prep = engine.dialect.identifier_preparer
            text = "TEXT" if engine.dialect.name in ("sqlite", "postgresql") else "VARCHAR(4000)"
            updated = prep.quote(mapping.columns["updated_at"])
            rows = conn.execute(
                sa.text(
                    f"SELECT CAST({prep.quote(key_source)} AS {text}), CAST({updated} AS {text}) "
                    f"FROM {prep.quote(mapping.table)}"
                )
            ).fetchall()
    finally:
        engine.dispose()
    prefix = f"{mapping.table}:{key_source}="
    source_rows = pl.DataFrame(
        {
            "location": [prefix + str(k) if k is not None else prefix + "NULL" for k, _ in rows],
            "updated": [u for _, u in rows],
        },
        schema={"location": pl.String, "updated": pl.String},
    )
    origin = f"{source_name}.{mapping.table}"
    seen = con.sql(
        f"SELECT DISTINCT _source_location FROM raw.{entity} WHERE _source = $s UNION "
        f"SELECT DISTINCT _source_location FROM quarantine.{entity} WHERE _source = $s",
        params={"s": origin},
    ).pl()
    unread = source_rows.join(seen.rename({"_source_location": "location"}), on="location", how="anti")
    if suppressed is not None and suppressed[1] and unread.height:
        key, hashes = suppressed
        unread = unread.filter(
            pl.col("location").map_elements(lambda loc: location_hash(key, origin, loc) not in hashes, pl.Boolean)
        )
    if unread.height == 0:
        return []
    before = unread.filter(pl.col("updated") < start.isoformat()) if start else unread.clear()
    newer = unread.filter(pl.col("updated") > (watermark or "")) if watermark else unread.clear()
    lost = unread.join(before, on="location", how="anti").join(newer, on="location", how="anti")
    findings = []
    for frame, status, loss in (
        (before, "before the history start", False),
        (newer, "not loaded yet", False),
        (lost, "never read", True),
    ):
        if frame.height:
            examples = ", ".join(frame["location"].head(5).to_list())
            findings.append(
                Finding(
                    source_name,
                    entity,
                    f"table {mapping.table}",
                    status,
                    f"{frame.height} row(s), e.g. {examples}",
                    loss,
                )
            )
    return findings
