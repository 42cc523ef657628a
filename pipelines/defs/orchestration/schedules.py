"""The nightly run: the newest daily partition of every source, then everything downstream of it."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import dagster as dg

from crm.settings import Settings

NIGHTLY_JOB = "nightly_build"


def build_nightly(settings: Settings, partitions: dg.DailyPartitionsDefinition):
    job = dg.define_asset_job(
        NIGHTLY_JOB,
        selection=dg.AssetSelection.all(),
        partitions_def=partitions,
        description="Ingest the newest day of every source, then rebuild the warehouse and everything after it.",
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
        # The newest complete day as of the tick, not as of now: a late tick still loads its own day.
        tick = context.scheduled_execution_time or datetime.now(UTC)
        if tick.tzinfo is not None:
            tick = tick.astimezone(ZoneInfo(settings.schedule.timezone))
        newest = tick.date() - timedelta(days=1)
        if newest < partitions.start.date():
            return dg.SkipReason(f"no complete day since the history starts ({partitions.start.date()})")
        return dg.RunRequest(run_key=newest.isoformat(), partition_key=newest.isoformat())

    return job, nightly_build_schedule
