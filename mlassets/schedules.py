"""Schedules of the code location: the daily partitions of the per-day tables."""

import datetime as dt

from dagster import RunRequest, ScheduleDefinition, ScheduleEvaluationContext, schedule

from mlassets.jobs import iot_daily_tables_job
from mlassets.partitions import INFERENCE_DAYS


@schedule(job=iot_daily_tables_job, cron_schedule="15 0 * * *", execution_timezone="UTC")
def iot_daily_tables_schedule(context: ScheduleEvaluationContext) -> RunRequest:
    """Every day at 00:15 UTC, the error tables of the day that just ended."""
    yesterday = context.scheduled_execution_time.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)
    key = INFERENCE_DAYS.get_partition_key_for_timestamp(
        dt.datetime.combine(yesterday, dt.time(12), dt.timezone.utc).timestamp())
    return RunRequest(run_key=key, partition_key=key)


SCHEDULES: list[ScheduleDefinition] = [iot_daily_tables_schedule]
