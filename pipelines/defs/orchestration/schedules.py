"""The nightly run: the newest daily partition of every source, then everything downstream of it."""


import dagster as dg

from pipelines.settings import Settings

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
        newest = partitions.get_last_partition_key(current_time=context.scheduled_execution_time)
        if newest is None:
            return dg.SkipReason("no complete day to ingest yet")
        return dg.RunRequest(run_key=newest, partition_key=newest)

    return job, nightly_build_schedule
