"""The one Dagster code location: every asset, check, resource, job and schedule of the project.

`dagster dev` (or `crm dev`) loads ``defs`` from here; `crm build` executes the same definitions
in-process. The sources config is named by CRM_CONFIG (default: the simulated company).
"""

from __future__ import annotations

import os

import dagster as dg

from pipelines.defs.ingest.assets import build_ingest_assets, daily_partitions
from pipelines.defs.orchestration.schedules import build_nightly
from pipelines.defs.scoring.assets import build_scoring_defs
from pipelines.defs.serving.assets import build_serving_defs
from pipelines.defs.warehouse.assets import build_warehouse_defs
from pipelines.resources import crm_settings_resource
from pipelines.settings import Settings, load_settings


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    settings = settings or load_settings()
    # dbt's profile and the identity step read the warehouse path from the environment; the
    # sources config is the one place it is decided, so publish it before anything reads it.
    os.environ["CRM_WAREHOUSE_PATH"] = str(settings.warehouse_path)
    partitions = daily_partitions(settings)
    nightly_job, nightly_schedule = build_nightly(settings, partitions)
    resource = crm_settings_resource()
    if settings.config_path != resource.settings().config_path:
        resource = type(resource)(config_path=str(settings.config_path))
    ingest = dg.Definitions(
        assets=build_ingest_assets(settings),
        jobs=[nightly_job],
        schedules=[nightly_schedule],
        resources={"crm": resource},
        # DuckDB has one writer: steps of a run execute one after another in this process.
        executor=dg.in_process_executor,
    )
    others = dg.Definitions.merge(ingest, build_warehouse_defs(), build_scoring_defs(settings))
    # Serving goes last: the snapshot waits for every asset merged before it, whatever they are.
    serving = build_serving_defs(upstream=others.resolve_asset_graph().get_all_asset_keys())
    return dg.Definitions.merge(others, serving)


defs = build_definitions()
