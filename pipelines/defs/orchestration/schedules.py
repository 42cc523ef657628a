"""The nightly run: what is new in every source since the last load, then everything downstream of it.

No partition key: the raw assets read from the ledger's cursor (pipelines/defs/ingest), so the
schedule only names the job, and a late or missed tick loses nothing (the next run reads all that
arrived meanwhile).
"""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import dagster as dg

from crm.build_lock import BuildRunningError, build_lock
from crm.settings import Settings
from pipelines.defs.orchestration.recovery import recover_interrupted_builds

NIGHTLY_JOB = "nightly_build"


def build_nightly(settings: Settings):
    job = dg.define_asset_job(
        NIGHTLY_JOB,
        selection=dg.AssetSelection.all(),
        description="Ingest what is new in every source, then rebuild the warehouse and everything after it.",
    )

    @dg.schedule(
        name="nightly_build_schedule",
        cron_schedule=settings.schedule.cron,
        execution_timezone=settings.schedule.timezone,
        job=job,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Nightly at the configured time (schedule.cron in the sources config; 02:00 by default).",
    )
    def nightly_build_schedule(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time or datetime.now(UTC)
        if tick.tzinfo is not None:
            tick = tick.astimezone(ZoneInfo(settings.schedule.timezone))
        # A build that holds the lock is alive: skip this tick, the next one reads what arrived. A
        # free lock means no build is alive, so runs still shown as started are dead: clear them.
        try:
            with build_lock(settings.warehouse_path, what="nightly schedule tick"):
                for line in recover_interrupted_builds(context.instance, settings):
                    context.log.warning(f"recovered: {line}")
        except BuildRunningError as exc:
            return dg.SkipReason(str(exc))
        # One run per tick: the run key makes a re-evaluated tick idempotent.
        return dg.RunRequest(run_key=tick.date().isoformat(), tags={"crm/nightly": tick.date().isoformat()})

    return job, nightly_build_schedule
