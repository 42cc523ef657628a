"""The one Dagster code location: every asset, check, resource, job and schedule of the project.

`dagster dev -m pipelines.definitions` (or `crm dev`) loads :func:`defs`, which reads the sources
config named by CRM_CONFIG (default: the simulated company); `crm build` and the tests call
:func:`build_definitions` with the settings they loaded. Importing this module builds nothing.
"""

from __future__ import annotations

import dagster as dg

from crm.settings import Settings, load_settings
from pipelines.defs.identity.assets import identity_resolution
from pipelines.defs.ingest.assets import IngestWindowResource, build_ingest_assets
from pipelines.defs.orchestration.schedules import build_nightly
from pipelines.defs.scoring.assets import SCORING_ASSETS
from pipelines.defs.serving.assets import build_serving_defs
from pipelines.defs.warehouse.assets import build_warehouse_defs
from pipelines.resources import CrmSettingsResource, ScoringResource, WarehouseResource


def warehouse_definitions(settings: Settings) -> dg.Definitions:
    """Everything between ingestion and serving: dbt around identity resolution, then the scores."""
    python_steps = dg.Definitions(
        assets=[identity_resolution, *SCORING_ASSETS],
        resources={
            "crm": CrmSettingsResource(config_path=str(settings.config_path)),
            "warehouse": WarehouseResource.from_settings(settings),
            "scoring": ScoringResource.from_settings(settings),
        },
    )
    return dg.Definitions.merge(python_steps, build_warehouse_defs())


def build_definitions(settings: Settings) -> dg.Definitions:
    nightly_job, nightly_schedule = build_nightly(settings)
    ingest = dg.Definitions(
        assets=build_ingest_assets(),
        # Empty: each run reads what is new; run config (or `crm build --start/--end`) sets a window.
        resources={"ingest_window": IngestWindowResource()},
        jobs=[nightly_job],
        schedules=[nightly_schedule],
        # DuckDB has one writer: steps of a run execute one after another in this process.
        executor=dg.in_process_executor,
    )
    steps = dg.Definitions.merge(ingest, warehouse_definitions(settings))
    # Serving goes last: the snapshot waits for every asset merged before it, whatever they are.
    serving = build_serving_defs(upstream=steps.resolve_asset_graph().get_all_asset_keys())
    return dg.Definitions.merge(steps, serving)


@dg.definitions
def defs() -> dg.Definitions:
    return build_definitions(load_settings())
