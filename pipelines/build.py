"""Run the whole pipeline in-process, as `crm build` and the tests do: no server, one writer.

The run goes through the same Dagster definitions as the UI and the nightly schedule, recorded in
the project's Dagster instance (<data folder>/dagster), so its runs show up in `crm dev` afterwards.

One build at a time: a build holds the warehouse's build lock (crm/build_lock.py) for its whole
run, so a second one is refused before it starts. Holding the lock also means no other build is
alive, so whatever an earlier, killed build left behind is cleared first, without anyone's help:
its runs still marked as started are marked failed, the warehouse pool slots they hold are freed,
and half-written snapshot and scratch files are removed.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import dagster as dg

from crm.build_lock import build_lock
from crm.settings import PROJECT_ROOT, Settings
from pipelines.definitions import build_definitions
from pipelines.defs.identity.assets import IDENTITY_OP
from pipelines.defs.orchestration.recovery import recover_interrupted_builds
from pipelines.defs.orchestration.schedules import NIGHTLY_JOB
from pipelines.defs.warehouse.assets import STEPS as DBT_STEPS


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
    # The days an explicit window re-read (None: each source read what was new since the last load).
    window: tuple[str | None, str | None] | None
    assets_materialized: int
    failures: list[str] = field(default_factory=list)
    failed_checks: list[str] = field(default_factory=list)
    warned_checks: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    check_messages: dict[str, str] = field(default_factory=dict)


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
    full_refresh: bool = False,
) -> BuildOutcome:
    """Materialize every asset (or those of ``groups``) in one run.

    Without ``start``/``end`` each source reads what is new since the last load (everything, the
    first time); with them, those days are re-read and replaced (either side may be open).
    ``reresolve``: identity resolution scores every pair of records again instead of only the new ones.
    ``full_refresh``: compute everything from the sources as a first build would, on the same
    warehouse (its models, ids and history kept): every source re-read whole (unless ``start``/``end``
    say otherwise), dbt's incremental models rebuilt from scratch, every pair of records re-resolved.
    The audit that the incremental paths lose nothing (tests/integration/test_incremental_equals_full.py).
    Raises :class:`crm.build_lock.BuildRunningError` at once when another build holds the lock.
    """
    with build_lock(settings.warehouse_path, what="crm build"):
        if instance is None:
            _relax_sqlite_durability()
            instance = dg.DagsterInstance.from_config(str(prepare_dagster_home(settings)))
        recovered = recover_interrupted_builds(instance, settings, include_unlaunched=True)
        if full_refresh and start is None and end is None:
            start = date.min
        outcome = _execute(settings, instance, start, end, on_step, quiet, groups, reresolve, full_refresh)
        outcome.recovered = recovered
        return outcome


def _run_config(
    window: tuple[str | None, str | None] | None, quiet: bool, progress: bool, reresolve: bool, full_refresh: bool
) -> dict:
    """The run's config: log level, the ingest window (re-read those days), progress, identity's
    re-resolve, dbt's full refresh."""
    run_config: dict = {"loggers": {"console": {"config": {"log_level": "CRITICAL" if quiet else "INFO"}}}}
    if window:
        run_config["resources"] = {"ingest_window": {"config": {"start": window[0] or "", "end": window[1] or ""}}}
    if progress:
        run_config["loggers"]["progress"] = {}
    ops: dict = {}
    if reresolve or full_refresh:
        ops[IDENTITY_OP] = {"config": {"reresolve": True}}
    if full_refresh:
        ops.update({step: {"config": {"full_refresh": True}} for step in DBT_STEPS})
    if ops:
        run_config["ops"] = ops
    return run_config


def _execute(settings, instance, start, end, on_step, quiet, groups, reresolve, full_refresh=False) -> BuildOutcome:
    defs = build_definitions(settings)
    job = defs.resolve_job_def(NIGHTLY_JOB)
    selection = None
    if groups:
        graph = defs.resolve_asset_graph()
        selection = [key for key in graph.get_all_asset_keys() if graph.get(key).group_name in groups]
    window = (start.isoformat() if start else None, end.isoformat() if end else None) if start or end else None
    run_config = _run_config(window, quiet, on_step is not None, reresolve, full_refresh)
    if on_step is not None:
        job = job.with_logger_defs({**job.loggers, "progress": _progress_logger(on_step)})
    result = job.execute_in_process(
        instance=instance, raise_on_error=False, run_config=run_config, asset_selection=selection
    )
    failures = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.step_failure_data.error
            user_failure = event.step_failure_data.user_failure_data
            if user_failure is not None and user_failure.description:
                message = user_failure.description
            else:
                message = (error.cause or error).message.strip() if error else "unknown error"
            failures.append(f"{event.step_key}: {message}")
        elif event.event_type_value in ("RUN_FAILURE", "PIPELINE_FAILURE") and not failures:
            data = event.event_specific_data
            error = getattr(data, "error", None)
            cause = (error.cause or error).message.strip() if error else ""
            failures.append(f"run: {event.message}" + (f" ({cause})" if cause else ""))
    failed_checks, warned_checks, check_messages = [], [], {}
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            continue
        label = f"{evaluation.asset_key.to_user_string()} / {evaluation.check_name}"
        if evaluation.description:
            check_messages[label] = evaluation.description[:500]
        if evaluation.severity == dg.AssetCheckSeverity.ERROR:
            failed_checks.append(label)
        else:
            warned_checks.append(label)
    materialized = len({e.asset_key for e in result.get_asset_materialization_events()})
    return BuildOutcome(
        success=result.success and not failed_checks,
        run_id=result.run_id,
        window=window,
        assets_materialized=materialized,
        failures=failures,
        failed_checks=failed_checks,
        warned_checks=warned_checks,
        check_messages=check_messages,
    )
