"""Run the whole pipeline in-process, as `crm build` and the tests do: no server, one writer.

The run goes through the same Dagster definitions as the UI and the nightly schedule, recorded in
the project's Dagster instance (<data folder>/dagster), so its runs show up in `crm dev` afterwards.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg

from crm.settings import PROJECT_ROOT, Settings
from pipelines.definitions import build_definitions
from pipelines.defs.identity.assets import IDENTITY_OP
from pipelines.defs.orchestration.schedules import NIGHTLY_JOB


def _relax_sqlite_durability() -> None:
    """Let this process's SQLite writes skip fsync (Dagster's run and event storage).

    A first load of two years of daily partitions records one materialization per asset and
    day: about 9,000 events, each its own SQLite commit. Without fsync that bookkeeping takes a
    third of the time. Only Dagster's run history is at stake on a power cut, never the
    warehouse (DuckDB) or the sources (opened read-only).
    """
    import sqlalchemy as sa

    if getattr(_relax_sqlite_durability, "done", False):
        return

    @sa.event.listens_for(sa.engine.Engine, "connect")
    def _no_fsync(dbapi_connection, _record) -> None:
        if type(dbapi_connection).__module__.startswith("sqlite3"):
            dbapi_connection.execute("PRAGMA synchronous = OFF")

    _relax_sqlite_durability.done = True


def prepare_dagster_home(settings: Settings) -> Path:
    """The Dagster instance folder under the data folder, holding the project's dagster.yaml."""
    home = settings.dagster_home.resolve()
    home.mkdir(parents=True, exist_ok=True)
    target = home / "dagster.yaml"
    template = PROJECT_ROOT / "dagster.yaml"
    if not target.exists() or target.read_bytes() != template.read_bytes():
        shutil.copyfile(template, target)
    return home


@dataclass
class BuildOutcome:
    success: bool
    run_id: str
    partition_range: tuple[str, str] | None
    assets_materialized: int
    failures: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    warned_checks: list[str] = field(default_factory=list)


class _ProgressHandler(logging.Handler):
    """Turns Dagster's step events into calls of ``on_step(step_key, status)``."""

    def __init__(self, on_step: Callable[[str, str], None]) -> None:
        super().__init__()
        self.on_step = on_step

    def emit(self, record: logging.LogRecord) -> None:
        meta = getattr(record, "dagster_meta", None) or {}
        event = meta.get("dagster_event")
        if event is None:
            return
        if event.event_type_value in ("STEP_START", "STEP_SUCCESS", "STEP_FAILURE", "STEP_SKIPPED"):
            self.on_step(event.step_key or "", event.event_type_value)


def _progress_logger(on_step: Callable[[str, str], None]) -> dg.LoggerDefinition:
    @dg.logger
    def progress(_init_context) -> logging.Logger:
        log = logging.getLogger("crm.build.progress")
        log.handlers = [_ProgressHandler(on_step)]
        log.setLevel(logging.DEBUG)
        log.propagate = False
        return log

    return progress


def _partition_range(
    partitions: dg.PartitionsDefinition, start: date | None, end: date | None
) -> tuple[str, str] | None:
    keys = partitions.get_partition_keys()
    if not keys:
        return None
    first = start.isoformat() if start else keys[0]
    last = end.isoformat() if end else keys[-1]
    first, last = max(first, keys[0]), min(last, keys[-1])
    return (first, last) if first <= last else None


def run_build(
    settings: Settings,
    *,
    start: date | None = None,
    end: date | None = None,
    instance: dg.DagsterInstance | None = None,
    on_step: Callable[[str, str], None] | None = None,
    quiet: bool = True,
    groups: list[str] | None = None,
    reresolve: bool = False,
) -> BuildOutcome:
    """Materialize every asset (or those of ``groups``): the days start..end (default: all) in one run.

    ``reresolve``: identity resolution scores every pair of records again instead of only the new ones.
    """
    defs = build_definitions(settings)
    job = defs.resolve_job_def(NIGHTLY_JOB)
    selection = None
    if groups:
        graph = defs.resolve_asset_graph()
        selection = [key for key in graph.get_all_asset_keys() if graph.get(key).group_name in groups]
    partitions = job.partitions_def
    key_range = _partition_range(partitions, start, end)
    tags = {}
    if key_range:
        tags = {"dagster/asset_partition_range_start": key_range[0], "dagster/asset_partition_range_end": key_range[1]}
    loggers = {"console": {"config": {"log_level": "CRITICAL" if quiet else "INFO"}}}
    if on_step is not None:
        job = job.with_logger_defs({**job.loggers, "progress": _progress_logger(on_step)})
        loggers["progress"] = {}
    if instance is None:
        _relax_sqlite_durability()
        instance = dg.DagsterInstance.from_config(str(prepare_dagster_home(settings)))
    run_config: dict = {"loggers": loggers}
    if reresolve:
        run_config["ops"] = {IDENTITY_OP: {"config": {"reresolve": True}}}
    result = job.execute_in_process(
        instance=instance, tags=tags, raise_on_error=False, run_config=run_config, asset_selection=selection
    )
    failures = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            message = (error.cause or error).message.strip() if error else "unknown error"
            failures.append(f"{event.step_key}: {message}")
    failed_checks, warned_checks = [], []
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            continue
        label = f"{evaluation.asset_key.to_user_string()} / {evaluation.check_name}"
        if evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed_checks.append(label)
        else:
            warned_checks.append(label)
    materialized = len({e.asset_key for e in result.get_asset_materialization_events()})
    return BuildOutcome(
        success=result.success and not failed_checks,
        run_id=result.run_id,
        partition_range=key_range,
        assets_materialized=materialized,
        failures=failures,
        failed_checks=failed_checks,
        warned_checks=warned_checks,
    )
