"""What a killed build leaves behind, cleared by the next one without anyone's help.

A build holds the warehouse's build lock (crm/build_lock.py) for its whole run, and the operating
system releases the lock when the process dies. So whoever holds the lock knows that no build is
alive, and every run the Dagster instance still shows as starting or started is dead: it is marked
failed and the warehouse pool slots it holds are freed (otherwise every later run waits for them
forever). Half-written snapshot files and scratch files are removed, and a dbt process the killed
build had started is stopped: it runs on without its parent (dagster-dbt does not tie it to the
build) and holds the warehouse's DuckDB lock until it ends. `crm build` does this before it starts;
the nightly schedule does it before it asks for a run (pipelines/defs/orchestration).
"""

import os
import shutil
import signal
import time
from pathlib import Path

import dagster as dg

from crm.settings import Settings

_IN_FLIGHT = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


def recover_interrupted_builds(
    instance: dg.DagsterInstance, settings: Settings, *, include_unlaunched: bool = False
) -> list[str]:
    """Clear what dead builds left; call only while holding the build lock. One line per thing cleared.

    ``include_unlaunched`` also fails runs created but never started (an in-process build killed in
    its first second); the daemon's queued runs are legitimate and left alone otherwise.
    """
    statuses = list(_IN_FLIGHT) + ([dg.DagsterRunStatus.NOT_STARTED] if include_unlaunched else [])
    recovered = []
    for record in instance.get_run_records(filters=dg.RunsFilter(statuses=statuses)):
        run = record.dagster_run
        instance.report_run_failed(
            run,
            message="The process running this build ended without finishing it (killed or crashed); "
            "marked failed by the next build.",
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(f"run {run.run_id[:8]} ({run.status.value}) marked failed, its pool slots freed")
    recovered += _stop_leftover_dbt(settings.warehouse_path)
    for folder, pattern in ((settings.data_dir / "snapshots", ".*.partial*"), (settings.data_dir / "tmp", "*")):
        for leftover in sorted(folder.glob(pattern)) if folder.exists() else []:
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            recovered.append(f"removed the leftover {leftover}")
    return recovered


def _stop_leftover_dbt(warehouse: Path, patience_s: float = 10.0) -> list[str]:
    """Stop every dbt process pointed at this warehouse (its path in the command line's --vars).

    Called while holding the build lock, so none of them belongs to a live build. Linux's /proc only:
    elsewhere nothing is found, and the next build reports the lock as before."""
    target = str(Path(warehouse).resolve())
    stopped = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = [a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0") if a]
        except OSError:
            continue
        if not any(Path(a).name == "dbt" for a in args[:2]) or not any(target in a for a in args):
            continue
        pid = int(entry.name)
        try:
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + patience_s
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
                time.sleep(0.1)
            if Path(f"/proc/{pid}").exists() and not _is_zombie(pid):
                os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        stopped.append(f"stopped dbt (process {pid}) left running by a killed build")
    return stopped


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
