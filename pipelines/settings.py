"""Where everything lives and which sources feed the warehouse, read from one YAML file.

The file is named by ``--config``, else ``CRM_CONFIG``, else ``config/sources.demo.yml`` (the
simulated company). ``${VAR}`` and ``${VAR:-default}`` in it are filled from the environment, so
one file serves the demo, the tests and a real deployment (credentials stay in the environment).
Relative paths are resolved against the project root, not the working directory.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipelines.defs.ingest.entities import ENTITIES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config" / "sources.demo.yml"
# Innermost first, so a default may itself hold a ${VAR}: ${A:-${B:-x}/y}.
_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^${}]*))?\}")


class ConfigError(ValueError):
    """The sources config cannot be used; the message says which file and which key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EntityMapping(_Strict):
    """How one source table/file maps onto a canonical entity."""

    # canonical column -> the source's column (for JSON: a dotted path such as requester.email)
    columns: dict[str, str]
    # Known renames seen in the source: new source name -> the name `columns` uses.
    renames: dict[str, str] = Field(default_factory=dict)
    # Source columns that are known and deliberately not loaded (no drift warning for them).
    ignore_columns: list[str] = Field(default_factory=list)
    table: str | None = None  # sql
    pattern: str | None = None  # file_drop: relative glob with {date}, e.g. events/events_{date}.csv
    single_file: bool = False  # file_drop: one file holding all history, not one per day
    date_column: str | None = None  # single_file: canonical column whose date assigns the partition


class SqlSource(_Strict):
    kind: Literal["sql"]
    url: str
    entities: dict[str, EntityMapping]


class FileDropSource(_Strict):
    kind: Literal["file_drop"]
    path: Path
    delimiter: str = ","
    entities: dict[str, EntityMapping]


class PagedExportSource(_Strict):
    kind: Literal["paged_export"]
    path: Path
    first_cursor: str
    entities: dict[str, EntityMapping]


Source = Annotated[SqlSource | FileDropSource | PagedExportSource, Field(discriminator="kind")]


class QualitySettings(_Strict):
    # A batch with more bad rows than this share blocks everything downstream of it.
    max_quarantine_share: float = 0.05
    # Below this many rows a batch's share says little (1 bad row in 8 is 12%): the check passes.
    min_rows_for_share: int = 200


class ScheduleSettings(_Strict):
    cron: str = "0 2 * * *"
    timezone: str = "UTC"


class Settings(_Strict):
    config_path: Path
    warehouse_path: Path
    # Everything the project writes besides the warehouse: models, snapshots, exports, segments.
    data_dir: Path = Path("data")
    history_start: date | Literal["auto"] = "auto"
    schedule: ScheduleSettings = ScheduleSettings()
    quality: QualitySettings = QualitySettings()
    sources: dict[str, Source]

    @field_validator("sources")
    @classmethod
    def _entities_known_and_unique(cls, sources: dict[str, Source]) -> dict[str, Source]:
        seen: dict[str, str] = {}
        for source_name, source in sources.items():
            for entity_name, mapping in source.entities.items():
                if entity_name not in ENTITIES:
                    raise ValueError(
                        f"source '{source_name}': unknown entity '{entity_name}'; "
                        f"known entities: {', '.join(sorted(ENTITIES))}"
                    )
                if entity_name in seen:
                    raise ValueError(f"entity '{entity_name}' is fed by both '{seen[entity_name]}' and '{source_name}'")
                seen[entity_name] = source_name
                entity = ENTITIES[entity_name]
                unknown = set(mapping.columns) - set(entity.column_names)
                if unknown:
                    raise ValueError(
                        f"source '{source_name}', entity '{entity_name}': unknown canonical columns {sorted(unknown)}; "
                        f"canonical columns are {entity.column_names}"
                    )
                missing = [c.name for c in entity.columns if c.required and c.name not in mapping.columns]
                # An order id can be derived from the source location; everything else required must be mapped.
                missing = [m for m in missing if not (entity_name == "sales_orders" and m == "order_id")]
                if missing:
                    raise ValueError(
                        f"source '{source_name}', entity '{entity_name}': required canonical columns {missing} are not mapped"
                    )
        return sources

    def source_of(self, entity_name: str) -> tuple[str, Source, EntityMapping] | None:
        for source_name, source in self.sources.items():
            if entity_name in source.entities:
                return source_name, source, source.entities[entity_name]
        return None


def _interpolate(text: str, config_path: Path) -> str:
    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = os.environ.get(name)
        if value is None or value == "":
            if default is None:
                raise ConfigError(f"{config_path}: environment variable {name} is not set and has no default")
            return default
        return value

    while True:
        filled = _ENV_PATTERN.sub(replace, text)
        if filled == text:
            return filled
        text = filled


def _resolve(path: Path) -> Path:
    return path if path.is_absolute() else (PROJECT_ROOT / path)


def _with_resolved_location(source: Source) -> Source:
    if isinstance(source, SqlSource):
        prefix = "sqlite:///"
        if source.url.startswith(prefix) and not Path(source.url[len(prefix) :]).is_absolute():
            return source.model_copy(update={"url": prefix + str(_resolve(Path(source.url[len(prefix) :])))})
        return source
    return source.model_copy(update={"path": _resolve(source.path)})


def config_path_from_env(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).resolve()
    env = os.environ.get("CRM_CONFIG")
    return Path(env).resolve() if env else DEFAULT_CONFIG


def load_settings(path: str | Path | None = None) -> Settings:
    config_path = config_path_from_env(path)
    if not config_path.exists():
        raise ConfigError(f"sources config not found: {config_path}")
    try:
        raw = yaml.safe_load(_interpolate(config_path.read_text(encoding="utf-8"), config_path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{config_path}: not valid YAML: {exc}") from exc
    raw.setdefault("warehouse_path", os.environ.get("CRM_WAREHOUSE_PATH", "data/warehouse/crm.duckdb"))
    raw.setdefault("data_dir", os.environ.get("CRM_DATA_DIR", "data"))
    try:
        settings = Settings(config_path=config_path, **raw)
    except ValueError as exc:
        raise ConfigError(f"{config_path}: {exc}") from exc
    sources = {name: _with_resolved_location(src) for name, src in settings.sources.items()}
    return settings.model_copy(update={
            "warehouse_path": _resolve(settings.warehouse_path),
            "data_dir": _resolve(settings.data_dir),
            "sources": sources,
        })
