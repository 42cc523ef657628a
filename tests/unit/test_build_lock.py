"""One build per warehouse: a second one is refused at once; a dead one is cleared by whoever comes next."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime

import dagster as dg
import pytest

from crm.build_lock import BuildRunningError, build_lock
from pipelines.definitions import build_definitions


def _hold_lock_in_another_process(warehouse):
    code = textwrap.dedent(
        f"""
        import time
        from pathlib import Path
        from crm.build_lock import build_lock
        with build_lock(Path({str(warehouse)!r}), what="crm build --config x.yml"):
            print("held", flush=True)
            time.sleep(120)
        """
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_holder_is_refused_at_once_naming_the_first_and_a_dead_one_frees_the_lock(tmp_path):
    warehouse = tmp_path / "crm.duckdb"
    with build_lock(warehouse), build_lock(warehouse):  # re-entrant within a process
        pass
    holder = _hold_lock_in_another_process(warehouse)
    try:
        started = time.monotonic()
        with pytest.raises(BuildRunningError) as error, build_lock(warehouse):
            pass
        assert time.monotonic() - started < 1
        assert f"process {holder.pid} started" in str(error.value) and "crm build --config x.yml" in str(error.value)
    finally:
        holder.kill()
        holder.wait()
    with build_lock(warehouse):  # the OS released the killed holder's lock
        pass


def test_the_nightly_tick_clears_dead_runs_and_skips_while_a_build_runs(use_company, small_company):
    settings = use_company(small_company)
    defs = build_definitions(settings)
    schedule = defs.resolve_schedule_def("nightly_build_schedule")
    tick = datetime(2024, 3, 5, 2, 0, tzinfo=UTC)
    with dg.instance_for_test() as instance:
        job = defs.resolve_job_def("nightly_build")
        dead = instance.create_run_for_job(job, status=dg.DagsterRunStatus.STARTED)
        with dg.build_schedule_context(
            instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()
        ) as context:
            assert [r.run_key for r in schedule.evaluate_tick(context).run_requests] == ["2024-03-05"]
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        holder = _hold_lock_in_another_process(settings.warehouse_path)
        try:
            with dg.build_schedule_context(
                instance=instance, scheduled_execution_time=tick, repository_def=defs.get_repository_def()
            ) as context:
                result = schedule.evaluate_tick(context)
        finally:
            holder.kill()
            holder.wait()
        assert not result.run_requests and "another build of this warehouse is running" in result.skip_message
