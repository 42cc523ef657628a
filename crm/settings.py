"""Where everything lives and which sources feed the warehouse, read from one YAML file.

The file is named by ``--config``, else ``CRM_CONFIG``, else ``config/sources.demo.yml`` (the
simulated company); it is read by :func:`crm.config.read_yaml`, so ``${VAR}`` and
``${VAR:-default}`` in it are filled from the environment. The scores' settings (config/scoring.yml,
or the file the sources config or ``CRM_SCORING_CONFIG`` names) load through the same reader.

Relative paths, one rule each way (docs/sources.md, "Paths"):

* what the project **reads** (source folders, a SQLite file, the scoring config, the ground truth)
  and the data folder itself, when written in the config file, resolve against the config file's
  folder, so a config works from any working directory;
* what the project **writes** (``warehouse_path``) resolves against the data folder, so
  ``CRM_DATA_DIR`` moves everything the project writes;
* a path given in the environment instead of the file (``CRM_DATA_DIR``, ``CRM_WAREHOUSE_PATH``,
  ...) resolves against the working directory, as a path typed on a command line does.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from crm import warehouse
from crm.config import PROJECT_ROOT, ConfigError, env_path, read_yaml
from crm.ingest.entities import ENTITIES, EXTERNAL_IDS
from models_ml.scoring_config import ScoringConfig

DEFAULT_CONFIG = PROJECT_ROOT / "config" / "sources.demo.yml"
DEFAULT_SCORING_CONFIG = PROJECT_ROOT / "config" / "scoring.yml"

__all__ = ["PROJECT_ROOT", "ConfigError", "Settings", "load_settings", "load_scoring_config"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FreshnessSettings(_Strict):
    """How old a source's newest data may be before the Data health page warns, then flags an error
    (days between the newest day with data and today). Left out: no expectation."""

    warn_after_days: int | None = Field(default=None, ge=0)
    error_after_days: int | None = Field(default=None, ge=0)


DateFormat = str | dict[str, str]


def _checked_date_format(value: DateFormat | None) -> DateFormat | None:
    formats = [value] if isinstance(value, str) else list((value or {}).values())
    for fmt in formats:
        if "%" not in fmt:
            raise ValueError(
                f"date_format {fmt!r} is not a strftime format; write it with % codes, e.g. '%Y%m%d' for "
                "19970101, '%d.%m.%Y' for 01.01.1997, '%m/%d/%Y %H:%M' for 01/31/1997 14:05"
            )
    return value


class ReadingFormats(_Strict):
    """How values are written in a source, declared on the source or (overriding it) on one entity.

    ``date_format`` is a strftime format (``%Y%m%d``, ``%d.%m.%Y %H:%M``) for every date and
    timestamp column, or a mapping canonical column -> format. Without one, ISO-8601 (with or without
    a UTC offset) and the unambiguous ``YYYYMMDD``, ``YYYY/MM/DD`` and ``DD.MM.YYYY`` are read; a
    day-month order that only a declaration can settle (``01/02/2024``) goes to quarantine with a
    reason that says what to declare. ``decimal`` is the decimal mark of numbers (``,``: ``1.234,50``).
    """

    date_format: DateFormat | None = None
    decimal: Literal[".", ","] | None = None

    @field_validator("date_format")
    @classmethod
    def _strftime(cls, value: DateFormat | None) -> DateFormat | None:
        return _checked_date_format(value)


class EntityMapping(ReadingFormats):
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
    date_column: str | None = None  # single_file: canonical column whose date places each row in the history
    # An entity that may legitimately be absent or empty: a warning instead of a failed step.
    optional: bool | None = None
    # Overrides the source's freshness for this entity ({} = no expectation, e.g. a rarely changing list).
    freshness: FreshnessSettings | None = None
    # External ids of the person (kind -> the source's column), e.g. {loyalty_card: CardNo,
    # national_id: SSN}: stored together in the canonical `external_ids` column; identity
    # resolution links records that share one (guarded against placeholders).
    ids: dict[str, str] = Field(default_factory=dict)


class _SourceBase(ReadingFormats):
    # A source that may legitimately be missing (a folder not yet delivered, a table not yet
    # created): its entities warn instead of failing the step. Every entity may override it.
    optional: bool = False
    # How old the newest data may get before the Data health page warns, then flags an error.
    freshness: FreshnessSettings | None = None
    entities: dict[str, EntityMapping]


class SqlSource(_SourceBase):
    kind: Literal["sql"]
    url: str


class FileDropSource(_SourceBase):
    kind: Literal["file_drop"]
    path: Path
    # None: read from each file's header (comma, semicolon, tab or pipe).
    delimiter: str | None = None
    # The files' character encoding: utf-8 (a byte-order mark is fine), latin-1, cp1252, utf-16, ...
    encoding: str = "utf-8"
    # Files in the drop folders that no entity reads on purpose (globs relative to `path`); any
    # other file there that no pattern matches is reported by `crm check` and `crm audit`.
    ignore_files: list[str] = Field(default_factory=list)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        import codecs

        try:
            codecs.lookup(value)
        except LookupError as exc:
            raise ValueError(f"encoding {value!r} is unknown; e.g. utf-8, latin-1, cp1252, utf-16") from exc
        return value

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is not None and len(value) != 1:
            raise ValueError(f"delimiter {value!r} must be one character (e.g. ',', ';', '\\t' written as a tab)")
        return value


class PagedExportSource(_SourceBase):
    kind: Literal["paged_export"]
    path: Path
    first_cursor: str


Source = Annotated[SqlSource | FileDropSource | PagedExportSource, Field(discriminator="kind")]


def is_optional(source: Source, mapping: EntityMapping) -> bool:
    return mapping.optional if mapping.optional is not None else source.optional


def date_formats(source: Source, mapping: EntityMapping) -> dict[str, str] | str | None:
    """The entity's declared date format(s), else the source's."""
    return mapping.date_format if mapping.date_format is not None else source.date_format


def decimal_mark(source: Source, mapping: EntityMapping) -> str:
    return mapping.decimal or source.decimal or "."


class QualitySettings(_Strict):
    # A batch with more bad rows than this share blocks everything downstream of it.
    max_quarantine_share: float = 0.05
    # Below this many rows a batch's share says little (1 bad row in 8 is 12%): the check passes.
    min_rows_for_share: int = 200


class IdentityConfig(_Strict):
    """How identity resolution decides (the defaults are the evaluated ones, docs/benchmarks.md)."""

    # Phones written without a country code are read as numbers of this region.
    phone_region: str = "GB"
    # Two records are one person when the trained model gives at least this probability.
    match_threshold: float = Field(default=0.95, gt=0, lt=1)
    # Pairs from this probability up to the threshold, in different customers, go to the steward's review.
    review_threshold: float = Field(default=0.5, gt=0, lt=1)
    # No customer may hold more than this many distinct descriptions of a person (name, email,
    # phone, address...): a bigger merge is refused and listed for a steward (shared mailboxes, placeholders).
    max_cluster_size: int = Field(default=50, ge=2)
    # The model is trained again when the company has grown (or shrunk) by this share since it was trained.
    retrain_growth: float = Field(default=0.25, gt=0)


class ScheduleSettings(_Strict):
    cron: str = "0 2 * * *"
    timezone: str = "UTC"


class Settings(_Strict):
    config_path: Path
    warehouse_path: Path
    # DuckDB's memory cap for every connection to the warehouse (and dbt's): spill, never swap.
    warehouse_memory_limit: str = warehouse.DEFAULT_MEMORY_LIMIT
    warehouse_threads: int | None = None
    # Everything the project writes besides the warehouse: models, snapshots, exports, segments.
    data_dir: Path = Path("data")
    # The scores' settings: horizon, bands, retraining, tiers, benefits, actions.
    scoring_config: Path = DEFAULT_SCORING_CONFIG
    # Only for the simulated company: the hidden truth that `crm evaluate` and the model card compare with.
    ground_truth_dir: Path | None = None
    history_start: date | Literal["auto"] = "auto"
    # The B2B/B2C segment of customers when the sources hold no account at all (an orders file):
    # a sensible default instead of one big "Unknown" segment.
    default_segment: str = "B2C"
    schedule: ScheduleSettings = ScheduleSettings()
    quality: QualitySettings = QualitySettings()
    identity: IdentityConfig = IdentityConfig()
    sources: dict[str, Source]

    @field_validator("sources")
    @classmethod
    def _entities_known(cls, sources: dict[str, Source]) -> dict[str, Source]:
        # An entity may be fed by several sources (two shops, two help desks): each row keeps its
        # source's name in `_source_system`, and keys are only compared within one source.
        for source_name, source in sources.items():
            for entity_name, mapping in source.entities.items():
                if entity_name not in ENTITIES:
                    raise ValueError(
                        f"source '{source_name}': unknown entity '{entity_name}'; "
                        f"known entities: {', '.join(sorted(ENTITIES))}"
                    )
                entity = ENTITIES[entity_name]
                unknown = set(mapping.columns) - set(entity.column_names)
                if unknown:
                    raise ValueError(
                        f"source '{source_name}', entity '{entity_name}': unknown canonical columns {sorted(unknown)}; "
                        f"canonical columns are {entity.column_names}"
                    )
                _check_external_ids(source_name, entity_name, mapping)
                missing = [c.name for c in entity.columns if c.required and c.name not in mapping.columns]
                # An order id can be derived from the source location; everything else required must be mapped.
                missing = [m for m in missing if not (entity_name == "sales_orders" and m == "order_id")]
                if missing:
                    raise ValueError(
                        f"source '{source_name}', entity '{entity_name}': required canonical columns {missing} "
                        "are not mapped"
                    )
        return sources

    def sources_of(self, entity_name: str) -> list[tuple[str, Source, EntityMapping]]:
        """Every source feeding the entity, in the order of the config: (name, source, mapping)."""
        return [
            (source_name, source, source.entities[entity_name])
            for source_name, source in self.sources.items()
            if entity_name in source.entities
        ]

    def connect_warehouse(self, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
        """The build warehouse, opened the one way the project opens it (:func:`crm.warehouse.connect`)."""
        return warehouse.connect(
            self.warehouse_path,
            read_only=read_only,
            memory_limit=self.warehouse_memory_limit,
            threads=self.warehouse_threads,
        )

    def freshness_expectations(self) -> list[tuple[str, str, int | None, int | None]]:
        """(source, entity, warn after days, error after days) of every configured entity: the entity's
        own freshness, else its source's (as dbt's source freshness works)."""
        rows = []
        for source_name, source in self.sources.items():
            for entity_name, mapping in source.entities.items():
                expected = mapping.freshness if mapping.freshness is not None else source.freshness
                expected = expected or FreshnessSettings()
                rows.append((source_name, entity_name, expected.warn_after_days, expected.error_after_days))
        return rows

    @property
    def dagster_home(self) -> Path:
        """Dagster's instance folder (runs, event logs, schedules): under the data folder like everything else."""
        return self.data_dir / "dagster"

    @property
    def ground_truth(self) -> Path | None:
        """The ground truth folder when it exists (the simulated company), else None."""
        return self.ground_truth_dir if self.ground_truth_dir and self.ground_truth_dir.exists() else None


def _check_external_ids(source_name: str, entity_name: str, mapping: EntityMapping) -> None:
    where = f"source '{source_name}', entity '{entity_name}'"
    if EXTERNAL_IDS in mapping.columns:
        raise ValueError(f"{where}: external ids are declared with `ids: {{<kind>: <column>}}`, not in `columns`")
    if mapping.ids and EXTERNAL_IDS not in ENTITIES[entity_name].column_names:
        raise ValueError(f"{where}: `ids` are for entities that describe a person")
    for kind in mapping.ids:
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", kind):
            raise ValueError(f"{where}: id kind '{kind}' must be lower-case letters, digits and _ (e.g. loyalty_card)")


def _resolve(path: Path, base: Path = PROJECT_ROOT) -> Path:
    return Path(os.path.normpath(path if path.is_absolute() else (base / path)))


def _with_resolved_location(source: Source, base: Path) -> Source:
    if isinstance(source, SqlSource):
        prefix = "sqlite:///"
        if source.url.startswith(prefix) and not Path(source.url[len(prefix) :]).is_absolute():
            return source.model_copy(update={"url": prefix + str(_resolve(Path(source.url[len(prefix) :]), base))})
        return source
    return source.model_copy(update={"path": _resolve(source.path, base)})


def config_path_from_env(explicit: str | Path | None = None) -> Path:
    if explicit:
        return Path(explicit).resolve()
    return env_path("CRM_CONFIG", DEFAULT_CONFIG)


# Settings a config file may leave out, with the environment variable that sets them instead
# (None: the default is derived, see load_settings).
_ENVIRONMENT_DEFAULTS = {
    "warehouse_path": ("CRM_WAREHOUSE_PATH", None),
    "data_dir": ("CRM_DATA_DIR", "data"),
    "warehouse_memory_limit": ("CRM_DUCKDB_MEMORY_LIMIT", warehouse.DEFAULT_MEMORY_LIMIT),
    "scoring_config": ("CRM_SCORING_CONFIG", str(DEFAULT_SCORING_CONFIG)),
    "ground_truth_dir": ("CRM_GROUND_TRUTH_DIR", "data/ground_truth"),
}


def load_settings(path: str | Path | None = None) -> Settings:
    """The sources config at ``path`` (else CRM_CONFIG, else the demo), with every path resolved."""
    config_path = config_path_from_env(path)
    config_dir = config_path.parent
    raw = read_yaml(config_path, "sources config")
    # Where each path-valued setting came from decides what a relative value is relative to.
    from_environment = set()
    for key, (variable, default) in _ENVIRONMENT_DEFAULTS.items():
        if key in raw:
            # `data_dir: ${CRM_DATA_DIR:-../data}`: the variable's value is a path given in the environment.
            if os.environ.get(variable) and str(raw[key]) == os.environ[variable]:
                from_environment.add(key)
            continue
        if os.environ.get(variable):
            raw[key] = os.environ[variable]
            from_environment.add(key)
        elif default is not None:
            raw[key] = default
    try:
        settings = Settings(config_path=config_path, warehouse_path=raw.pop("warehouse_path", "-"), **raw)
    except ValueError as exc:
        raise ConfigError(f"{config_path}: {exc}") from exc
    cwd = Path.cwd()

    def read_base(key: str) -> Path:
        return cwd if key in from_environment else config_dir

    data_dir = _resolve(settings.data_dir, read_base("data_dir"))
    if str(settings.warehouse_path) == "-":
        warehouse_path = data_dir / "warehouse" / "crm.duckdb"
    else:
        warehouse_path = _resolve(settings.warehouse_path, cwd if "warehouse_path" in from_environment else data_dir)
    sources = {name: _with_resolved_location(src, config_dir) for name, src in settings.sources.items()}
    return settings.model_copy(
        update={
            "warehouse_path": warehouse_path,
            "data_dir": data_dir,
            "scoring_config": _resolve(settings.scoring_config, read_base("scoring_config")),
            "ground_truth_dir": (
                _resolve(settings.ground_truth_dir, read_base("ground_truth_dir"))
                if settings.ground_truth_dir
                else None
            ),
            "sources": sources,
        }
    )


def data_dir_from_env() -> Path:
    """The data folder for readers that never load the sources config (the dashboard): CRM_DATA_DIR,
    which `crm app` sets from the config it was given, else data/."""
    return _resolve(Path(os.environ.get("CRM_DATA_DIR") or "data"))


def load_scoring_config(path: str | Path | None = None) -> ScoringConfig:
    """The scores' settings from ``path``, else ``CRM_SCORING_CONFIG``, else config/scoring.yml."""
    config_path = Path(path).resolve() if path else env_path("CRM_SCORING_CONFIG", DEFAULT_SCORING_CONFIG)
    raw = read_yaml(config_path, "scoring config")
    try:
        return ScoringConfig(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{config_path}: {exc}") from exc
