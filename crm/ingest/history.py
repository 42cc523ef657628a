"""The first day of the daily partitions: from the config, or ("auto") the earliest day in the sources."""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import sqlalchemy as sa

from crm.ingest.readers import _page_header, list_drop_files, open_source_engine
from crm.settings import FileDropSource, PagedExportSource, Settings, SqlSource

FALLBACK_START = date(2020, 1, 1)


def history_start(settings: Settings) -> date:
    if settings.history_start != "auto":
        return settings.history_start
    return _detect(settings.config_path, settings.model_dump_json())


@lru_cache(maxsize=8)
def _detect(config_path, settings_json: str) -> date:
    """Cheap probes only: file names, the first export page, and MIN(updated_at) per SQL table."""
    settings = Settings.model_validate_json(settings_json)
    found: list[date] = []
    for source in settings.sources.values():
        if isinstance(source, FileDropSource):
            for mapping in source.entities.values():
                days = [day for _, day in list_drop_files(source, mapping) if day is not None]
                found.extend(days[:1])
        elif isinstance(source, PagedExportSource):
            first = source.path / f"{source.first_cursor}.jsonl"
            if first.exists():
                found.append(date.fromisoformat(_page_header(first)["export_date"]))
        elif isinstance(source, SqlSource):
            found.extend(_sql_earliest(source))
    return min(found) if found else FALLBACK_START


def _sql_earliest(source: SqlSource) -> list[date]:
    try:
        engine = open_source_engine("history", source)
    except FileNotFoundError:
        return []
    days = []
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            prep = engine.dialect.identifier_preparer
            for mapping in source.entities.values():
                column = mapping.columns.get("updated_at")
                if not mapping.table or not column or not inspector.has_table(mapping.table):
                    continue
                value = conn.execute(
                    sa.text(f"SELECT MIN({prep.quote(column)}) FROM {prep.quote(mapping.table)}")
                ).scalar()
                if value:
                    try:
                        days.append(date.fromisoformat(str(value)[:10]))
                    except ValueError:
                        continue
    except sa.exc.OperationalError:
        return []
    finally:
        engine.dispose()
    return days
