"""Dagster resources: the sources config and the DuckDB warehouse, configured from the environment."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import os

import dagster as dg
import duckdb

from pipelines.settings import Settings, config_path_from_env, load_settings


class CrmSettingsResource(dg.ConfigurableResource):
    """The sources config file; the warehouse path and every source location come from it."""

    config_path: str

    def settings(self) -> Settings:
        return load_settings(self.config_path)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The one writer connection to the build warehouse (DuckDB allows one writer process)."""
        path = self.settings().warehouse_path
        path.parent.mkdir(parents=True, exist_ok=True)
        # A cap below the machine's memory keeps big batches spilling to disk instead of swapping.
        con = duckdb.connect(str(path), config={"memory_limit": os.environ.get("CRM_DUCKDB_MEMORY_LIMIT", "4GB")})
        try:
            yield con
        finally:
            con.close()


def crm_settings_resource() -> CrmSettingsResource:
    return CrmSettingsResource(config_path=str(config_path_from_env()))
