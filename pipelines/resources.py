"""Dagster resources: thin handles on the domain package, configured from the sources config.

- ``crm``: the sources config file (where each source is and how it maps onto the entities);
- ``warehouse``: the build warehouse: path, memory cap and threads. Every step that reads or
  writes it connects through :func:`crm.warehouse.connect`, and dbt receives the same values as
  ``--vars`` on its own command line (its profile reads them), so nothing travels through this
  process's environment;
- ``scoring``: where models are kept, the scores' settings, and the ground truth (simulator only).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb

from crm import warehouse
from crm.build_lock import build_lock
from crm.settings import Settings, load_settings


class CrmSettingsResource(dg.ConfigurableResource):
    """The sources config file; every source location and mapping comes from it."""

    config_path: str

    def settings(self) -> Settings:
        return load_settings(self.config_path)


class WarehouseResource(dg.ConfigurableResource):
    """The build warehouse (DuckDB file). One writer at a time: connections are short-lived."""

    path: str
    memory_limit: str = warehouse.DEFAULT_MEMORY_LIMIT
    threads: int | None = None
    # dbt's `default_segment` var: the segment of customers when the sources hold no account.
    default_segment: str = "B2C"

    @classmethod
    def from_settings(cls, settings: Settings) -> WarehouseResource:
        return cls(
            path=str(settings.warehouse_path),
            memory_limit=settings.warehouse_memory_limit,
            threads=settings.warehouse_threads,
            default_segment=settings.default_segment,
        )

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Iterator[WarehouseResource]:
        # Every run that writes the warehouse holds its build lock: a second run is refused at once
        # (crm/build_lock.py). Re-entrant, so `crm build`, which takes it first, passes through.
        run = context.run.run_id[:8] if context.run else "outside a run"
        with build_lock(Path(self.path), what=f"dagster run {run}"):
            yield self

    @contextmanager
    def connect(self, *, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        con = warehouse.connect(self.path, read_only=read_only, memory_limit=self.memory_limit, threads=self.threads)
        try:
            yield con
        finally:
            con.close()

    def dbt_vars(self) -> str:
        """The `--vars` that point dbt's profile (dbt_project/profiles.yml) at this warehouse."""
        values = {
            "warehouse_path": str(Path(self.path).resolve()),
            "warehouse_memory_limit": self.memory_limit,
            "default_segment": self.default_segment,
        }
        if self.threads:
            values["warehouse_threads"] = self.threads
        return json.dumps(values)


class ScoringResource(dg.ConfigurableResource):
    """Where the scores keep their models, the scores' settings file, and (simulated company only) the
    ground truth the model card's oracle row compares with."""

    models_dir: str
    config_path: str
    ground_truth_dir: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ScoringResource:
        truth = settings.ground_truth
        return cls(
            models_dir=str(settings.data_dir / "models"),
            config_path=str(settings.scoring_config),
            ground_truth_dir=str(truth) if truth else "",
        )

    def ground_truth(self) -> Path | None:
        return Path(self.ground_truth_dir) if self.ground_truth_dir else None
