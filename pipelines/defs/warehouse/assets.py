"""Dagster wiring of the dbt project: every model an asset, every dbt test an asset check.

dbt runs in three selections, because two Python steps write schemas that dbt reads as sources
(dbt_project/models/sources.yml): identity resolution writes ``identity.*`` between staging and the
rest of the warehouse, and scoring writes ``ml.*`` after the marts it reads. The boundaries are
named here and nowhere else::

    raw/*  ->  dbt_staging (staging views, seeds)
           ->  identity/*                                   (pipelines/defs/identity)
           ->  dbt_warehouse (intermediate, marts)
           ->  ml/*                                         (pipelines/defs/scoring)
           ->  dbt_scored_marts (the marts that read ml.*: customer_scores, rep_actions,
                                 customer_360 and what reads it)

Dagster orders the steps by asset keys alone: a dbt source ``identity.records`` is the asset
``identity/records`` that the identity step materializes, and so on. The manifest is prepared
without manual steps: :func:`prepare_manifest` runs ``dbt parse`` when target/manifest.json is
missing or older than any file of the dbt project.
"""

import fcntl
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets

from crm.config import PROJECT_ROOT
from pipelines.resources import WarehouseResource

DBT_PROJECT_DIR = PROJECT_ROOT / "dbt_project"

# What reads the scores builds after them; everything else of the warehouse before them.
SCORED = "source:ml+"
STEPS = {
    "dbt_staging": ("path:models/staging resource_type:seed", ""),
    "dbt_warehouse": ("path:models/intermediate path:models/marts", SCORED),
    "dbt_scored_marts": (SCORED, ""),
}


def dbt_executable() -> str:
    """The dbt installed next to the running Python (the project's venv), else dbt on PATH."""
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def _newest_project_file(project_dir: Path) -> float:
    files = [f for sub in ("models", "macros", "seeds", "tests") for f in (project_dir / sub).rglob("*") if f.is_file()]
    files += [project_dir / name for name in ("dbt_project.yml", "profiles.yml", "packages.yml")]
    return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)


def prepare_manifest(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """Make sure target/manifest.json exists and is current; run `dbt parse` when it is not.

    Several processes may load the definitions at once (test workers, `dagster dev` and a build):
    a lock keeps them from parsing into the same target folder together."""
    manifest = project_dir / "target" / "manifest.json"
    manifest.parent.mkdir(exist_ok=True)
    with (project_dir / "target" / ".parse.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if manifest.exists() and manifest.stat().st_mtime >= _newest_project_file(project_dir):
            return manifest
        return _parse(project_dir, manifest)


def _parse(project_dir: Path, manifest: Path) -> Path:
    result = subprocess.run(
        [dbt_executable(), "parse", "--quiet", "--profiles-dir", str(project_dir)],
        cwd=project_dir,
        capture_output=True,
        text=True,
        check=False,
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


def dbt_build_step(project: DbtProject, name: str, select: str, exclude: str = "") -> dg.AssetsDefinition:
    """One `dbt build` of a selection as one Dagster step, pointed at the warehouse resource's file."""

    @dbt_assets(
        manifest=project.manifest_path,
        project=project,
        select=select,
        exclude=exclude,
        name=name,
        dagster_dbt_translator=CrmDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
    )
    def dbt_step(context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource):
        yield from dbt.cli(["build", "--vars", warehouse.dbt_vars()], context=context).stream()

    return dbt_step


def build_warehouse_defs() -> dg.Definitions:
    """The three dbt steps and the dbt resource (the warehouse resource comes from the definitions)."""
    prepare_manifest(DBT_PROJECT_DIR)
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target="duckdb")
    return dg.Definitions(
        assets=[dbt_build_step(project, name, select, exclude) for name, (select, exclude) in STEPS.items()],
        resources={"dbt": DbtCliResource(project_dir=project, dbt_executable=dbt_executable())},
    )
