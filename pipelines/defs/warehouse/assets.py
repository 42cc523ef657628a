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

The facts' staging models are incremental (dbt_project/macros/incremental.sql): a nightly run
restages only what the ledger says changed. A step rebuilds its incremental models from scratch
(``--full-refresh``) when asked (``crm build --full-refresh``) or when one of their definitions
changed since the last successful run on this warehouse (an upgrade that changes a model must not
leave history staged the old way). Each run's dbt reuses the parse of the previous one
(``partial_parse.msgpack`` kept per data folder), which dbt checks against files, vars and profile.
"""

import fcntl
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DagsterDbtTranslatorSettings, DbtCliResource, DbtProject, dbt_assets
from dagster_dbt.utils import select_unique_ids

from crm.config import PROJECT_ROOT
from pipelines.resources import CrmSettingsResource, WarehouseResource

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


# Per-invocation dbt folders (run_results.json, logs) kept under <data folder>/dbt; older ones pruned.
KEEP_DBT_INVOCATIONS = 12


def dbt_target_path(data_dir: Path, invocation: str) -> Path:
    root = data_dir / "dbt"
    root.mkdir(parents=True, exist_ok=True)
    old = sorted((p for p in root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    for folder in old[: max(0, len(old) - KEEP_DBT_INVOCATIONS + 1)]:
        shutil.rmtree(folder, ignore_errors=True)
    return root / invocation


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


class DbtStepConfig(dg.Config):
    """Run-time knobs of a dbt step."""

    full_refresh: bool = False  # rebuild the incremental models from scratch (`crm build --full-refresh`)


PARTIAL_PARSE = "partial_parse.msgpack"


def _incremental_definitions(manifest: Mapping[str, Any], unique_ids: set[str]) -> dict[str, str]:
    """Checksum of every incremental model among ``unique_ids`` and of every incremental model they
    read, however far upstream: what decides a full refresh (a mart that applies its staging's
    changes must be rebuilt when staging was rebuilt another way)."""
    nodes = manifest.get("nodes", {})

    def incremental(uid: str) -> bool:
        return uid in nodes and nodes[uid].get("config", {}).get("materialized") == "incremental"

    seen: set[str] = set()
    todo = [uid for uid in unique_ids if incremental(uid)]
    while todo:
        uid = todo.pop()
        if uid in seen:
            continue
        seen.add(uid)
        todo.extend(parent for parent in nodes[uid].get("depends_on", {}).get("nodes", []) if parent in nodes)
    return {uid: nodes[uid]["checksum"]["checksum"] for uid in sorted(seen) if incremental(uid)}


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def dbt_build_step(
    project: DbtProject, manifest: Mapping[str, Any], name: str, select: str, exclude: str = ""
) -> dg.AssetsDefinition:
    """One `dbt build` of a selection as one Dagster step, pointed at the warehouse resource's file."""
    step_ids = set(select_unique_ids(select, exclude, "", project, manifest))

    @dbt_assets(
        manifest=manifest,
        project=project,
        select=select,
        exclude=exclude,
        name=name,
        dagster_dbt_translator=CrmDbtTranslator(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True)),
    )
    def dbt_step(
        context: dg.AssetExecutionContext,
        config: DbtStepConfig,
        dbt: DbtCliResource,
        warehouse: WarehouseResource,
        crm: CrmSettingsResource,
    ):
        # dbt's per-invocation target folder and log go under the data folder, like everything written.
        data_dir = crm.settings().data_dir
        target = dbt_target_path(data_dir, f"{context.run_id[:8]}-{name}")
        target.mkdir(parents=True, exist_ok=True)
        parse_cache = data_dir / "dbt" / PARTIAL_PARSE
        if parse_cache.exists():
            shutil.copyfile(parse_cache, target / PARTIAL_PARSE)
        built = data_dir / "dbt" / f"{name}.incremental.json"
        definitions = _incremental_definitions(manifest, step_ids)
        previous = json.loads(built.read_text()) if built.exists() else None
        dbt_vars = json.loads(warehouse.dbt_vars())
        args = ["build"]
        if config.full_refresh or (definitions and previous is not None and previous != definitions):
            context.log.info(f"{name}: rebuilding the incremental models from scratch, every row tested")
            args.append("--full-refresh")
            dbt_vars["full_audit"] = True
        args += ["--vars", json.dumps(dbt_vars)]
        invocation = dbt.cli(args, context=context, target_path=target)
        try:
            yield from invocation.stream()
        finally:
            # A step that fails while dbt still runs (an error in the stream, a cancelled run) must not
            # leave dbt writing to the warehouse behind it: the next step or build would find it locked.
            if invocation.process.poll() is None:
                invocation.process.terminate()
                invocation.process.wait(timeout=30)
        if (target / PARTIAL_PARSE).exists():
            _write_atomically(parse_cache, (target / PARTIAL_PARSE).read_bytes())
        _write_atomically(built, json.dumps(definitions, indent=1).encode())

    return dbt_step


class DbtVersion(NamedTuple):
    """What dagster-dbt reads of the dbt version (its ``major``), without packaging's Version."""

    major: int
    minor: int
    patch: int

    @classmethod
    def installed(cls) -> "DbtVersion":
        return cls(*(int(part) for part in importlib.metadata.version("dbt-core").split(".")[:3]))


class CrmDbtCliResource(DbtCliResource):
    """dagster-dbt's resource without two per-step costs this project does not need: it asks the dbt
    executable for its version (`dbt --version`, a 2 s subprocess, once per step) where the executable
    is the project's own dbt-core (:func:`dbt_executable`), and builds a dbt adapter in process (0.5-2 s)
    that only serves row-count and column metadata, which these steps do not fetch."""

    @cached_property
    def _cli_version(self) -> DbtVersion:
        return DbtVersion.installed()

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002 (dagster-dbt's signature)
        return None


def build_warehouse_defs() -> dg.Definitions:
    """The three dbt steps and the dbt resource (the warehouse resource comes from the definitions)."""
    prepare_manifest(DBT_PROJECT_DIR)
    project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR, target="duckdb")
    # Read once for the three steps (dagster-dbt would read the file again for each).
    manifest = json.loads(Path(project.manifest_path).read_text())
    return dg.Definitions(
        assets=[dbt_build_step(project, manifest, name, select, exclude) for name, (select, exclude) in STEPS.items()],
        resources={"dbt": CrmDbtCliResource(project_dir=project, dbt_executable=dbt_executable())},
    )
