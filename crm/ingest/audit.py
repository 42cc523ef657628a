"""The reconciliation `crm audit` prints: for each source entity, rows read = raw + quarantine."""

from __future__ import annotations

from crm.ingest.entities import ENTITIES
from crm.ingest.ledger import create_reconciliation_view, quarantine_reasons_sql
from crm.ingest.readers import list_drop_files
from crm.settings import FileDropSource, Settings


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
        if "ops.ingest_partition_counts" not in tables:
            raise FileNotFoundError(f"The warehouse at {path} has no ingestion ledger yet.")
        if all(f"raw.{e}" in tables and f"quarantine.{e}" in tables for e in ENTITIES):
            create_reconciliation_view(con)
        entities = con.sql("SELECT * FROM ops.ingest_reconciliation").pl().to_dicts()
        reasons = con.sql(quarantine_reasons_sql([e for e in ENTITIES if f"quarantine.{e}" in tables])).pl().to_dicts()
        loaded = {(r[0], r[1]) for r in con.execute("SELECT entity, path FROM ops.loaded_files").fetchall()}
    not_loaded = []
    for source in settings.sources.values():
        if isinstance(source, FileDropSource):
            for entity, mapping in source.entities.items():
                for file_path, _ in list_drop_files(source, mapping):
                    relative = file_path.relative_to(source.path).as_posix()
                    if (entity, relative) not in loaded:
                        not_loaded.append(f"{entity}: {relative}")
    return {"warehouse": str(path), "entities": entities, "quarantine_reasons": reasons, "files_not_loaded": not_loaded}
