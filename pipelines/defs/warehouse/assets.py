"""Dagster wiring of the warehouse: dbt models as assets, identity resolution in between.

Asset graph (keys)::

    ["raw", <entity>]                        ingestion (pipelines/defs/ingest), dbt sources `raw.*`
      -> ["staging", "stg_<source>__<entity>s"], ["seeds", <seed>]      dbt op `dbt_staging`
      -> ["identity", "records"], ["identity", "customer_id_changes"]    Python op `identity_resolution`
      -> ["intermediate", "int_*"], ["marts", <model>]                   dbt op `dbt_warehouse`

The identity step needs Python (phonenumbers, Splink), so dbt runs in two selections around it:
the identity tables are dbt sources (`identity.*`) that the intermediate models read, which is
what makes Dagster order the three steps. dbt tests surface as asset checks of the model they
test (singular tests name their model in `meta.dagster.ref`).

The manifest is prepared without manual steps: ``prepare_manifest`` runs ``dbt parse`` when
target/manifest.json is missing or older than any file of the dbt project.
"""


import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
from dagster import AssetExecutionContext
import duckdb
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from pipelines.defs.warehouse.identity import IdentitySettings, run_identity_resolution
from pipelines.defs.warehouse.splink_matching import DEFAULT_THRESHOLD, MatchSettings

PROJECT_ROOT = Path(__file__).resolve().parents[3]
DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"
DEFAULT_WAREHOUSE = "data/warehouse/crm.duckdb"

STAGING_SELECT = "path:models/staging resource_type:seed"
WAREHOUSE_SELECT = "path:models/intermediate path:models/marts"
# Marts that join the scores (customer_360 and what reads it) build after the scoring step, in a
# third dbt selection owned by pipelines/defs/scoring.
SCORED_MARTS_SELECT = "customer_360+"

IDENTITY_RECORDS = dg.AssetKey(["identity", "records"])
IDENTITY_CHANGES = dg.AssetKey(["identity", "customer_id_changes"])
IDENTITY_INPUTS = [
    dg.AssetKey(["staging", name])
    for name in (
        "stg_sales__contacts",
        "stg_sales__orders",
        "stg_marketing__contacts",
        "stg_marketing__events",
        "stg_support__tickets",
    )
] + [dg.AssetKey(["seeds", "identity_overrides"]), dg.AssetKey(["raw", "marketing_events"])]


def warehouse_path_from_env() -> Path:
    """CRM_WAREHOUSE_PATH (relative = relative to the repository root), as the dbt profile reads it."""
    path = Path(os.environ.get("CRM_WAREHOUSE_PATH") or DEFAULT_WAREHOUSE)
    return path if path.is_absolute() else PROJECT_ROOT / path


def dbt_executable() -> str:
    """The dbt installed next to the running Python (the project's venv), else dbt on PATH."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def _newest_project_file(project_dir: Path) -> float:
    newest = 0.0
    for sub in ("models", "macros", "seeds", "tests"):
        for f in (project_dir / sub).rglob("*"):
            if f.is_file():
                newest = max(newest, f.stat().st_mtime)
    for name in ("dbt_project.yml", "profiles.yml", "packages.yml"):
        f = project_dir / name
        if f.exists():
            newest = max(newest, f.stat().st_mtime)
    return newest


def prepare_manifest(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Make sure target/manifest.json exists and is current; run `dbt parse` when it is not."""
    manifest = project_dir / "target" / "manifest.json"
    if manifest.exists() and manifest.stat().st_mtime >= _newest_project_file(project_dir):
        return manifest
    env = {**os.environ, "DBT_PROFILES_DIR": str(project_dir), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    result = subprocess.run(
        [dbt_executable(), "parse", "--quiet"],
        cwd=project_dir,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not manifest.exists():
        raise RuntimeError(f"dbt parse failed in {project_dir}:\n{result.stdout}\n{result.stderr}")
    return manifest


class CrmDbtTranslator(DagsterDbtTranslator):
    """Keys by schema: ["staging", m], ["intermediate", m], ["marts", m], ["seeds", s]; sources
    keep dagster-dbt's ["<source>", "<table>"] (["raw", entity] = the ingestion assets)."""

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> dg.AssetKey:
        if dbt_resource_props["resource_type"] == "source":
            return dg.AssetKey([dbt_resource_props["source_name"], dbt_resource_props["name"]])
        schema = dbt_resource_props.get("config", {}).get("schema") or dbt_resource_props.get("schema")
        return dg.AssetKey([schema, dbt_resource_props["name"]])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return "warehouse"


class WarehouseResource(dg.ConfigurableResource):
    """The build warehouse (DuckDB file). One writer at a time: connections are short-lived."""

    path: str

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(self.path)
        try:
            yield con
        finally:
            con.close()


class IdentityConfig(dg.Config):
    """Run-time knobs of identity resolution (defaults are the evaluated ones)."""

    match_threshold: float = DEFAULT_THRESHOLD
    probabilistic: bool = True
    phone_region: str = "GB"


def build_identity_assets() -> list:
    @dg.multi_asset(
        name="identity_resolution",
        specs=[
            dg.AssetSpec(
                IDENTITY_RECORDS,
                deps=IDENTITY_INPUTS,
                group_name="warehouse",
                kinds={"python", "duckdb"},
                description="One row per source record with its stable customer_id (deterministic + Splink).",
            ),
            dg.AssetSpec(
                IDENTITY_CHANGES,
                deps=IDENTITY_INPUTS,
                group_name="warehouse",
                kinds={"python", "duckdb"},
                description="Append-only log of customer id merges and splits between runs.",
            ),
        ],
        check_specs=[
            dg.AssetCheckSpec("steward_overrides_honoured", asset=IDENTITY_RECORDS, blocking=True,
                              description="Every steward merge shares a customer; every split does not."),
        ],
    )
    def identity_resolution(context: AssetExecutionContext, config: IdentityConfig,
                            identity_warehouse: WarehouseResource):
        settings = IdentitySettings(
            phone_region=config.phone_region,
            probabilistic=config.probabilistic,
            match=MatchSettings(threshold=config.match_threshold),
        )
        with identity_warehouse.connect() as con:
            summary = run_identity_resolution(con, settings, run_id=context.run_id[:12])
            violations = con.execute(
                """
                with o as (
                    select action, left_source || ':' || left_key as l, right_source || ':' || right_key as r
                    from identity.steward_overrides
                )
                select o.action, o.l, o.r
                from o
                join identity.records a on a.record_key = o.l
                join identity.records b on b.record_key = o.r
                where (o.action = 'merge' and a.customer_id <> b.customer_id)
                   or (o.action = 'split' and a.customer_id = b.customer_id)
                """
            ).fetchall()
        context.log.info(f"identity resolution: {summary}")
        meta = summary.as_metadata()
        yield dg.MaterializeResult(asset_key=IDENTITY_RECORDS, metadata=meta)
        yield dg.MaterializeResult(
            asset_key=IDENTITY_CHANGES,
            metadata={"merges": summary.merges, "splits": summary.splits, "retired": summary.retired},
        )
        yield dg.AssetCheckResult(
            asset_key=IDENTITY_RECORDS,
            check_name="steward_overrides_honoured",
            passed=not violations,
            metadata={"violations": len(violations), "examples": str(violations[:5])},
        )

    return [identity_resolution]


def dbt_build_step(project: DbtProject, name: str, select: str, exclude: str = "") -> dg.AssetsDefinition:
    """One `dbt build` of a selection as one Dagster step: every model an asset, every test a check."""

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        select=select,
        exclude=exclude,
        name=name,
        dagster_dbt_translator=CrmDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
    )
    def dbt_step(context: AssetExecutionContext, dbt: DbtCliResource):
        yield from dbt.cli(["build"], context=context).stream()

    return dbt_step


def build_dbt_assets(project: DbtProject) -> list:
    return [
        # seeds and staging views (typed, trimmed, deduplicated)
        dbt_build_step(project, "dbt_staging", STAGING_SELECT),
        # intermediate models and marts; customer_360 and what reads it wait for the scores
        dbt_build_step(project, "dbt_warehouse", WAREHOUSE_SELECT, exclude=SCORED_MARTS_SELECT),
    ]


def build_warehouse_defs() -> dg.Definitions:
    """The warehouse's assets and resources, to be merged with the ingestion defs."""
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target="duckdb")
    project.prepare_if_dev()
    prepare_manifest(DBT_PROJECT_DIR)
    return dg.Definitions(
        assets=[*build_dbt_assets(project), *build_identity_assets()],
        resources={
            "dbt": DbtCliResource(project_dir=project, dbt_executable=dbt_executable()),
            "identity_warehouse": WarehouseResource(path=str(warehouse_path_from_env())),
        },
    )
