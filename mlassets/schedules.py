"""Schedules of the code location: the daily partitions of the per-day tables."""

from dagster import ScheduleDefinition

SCHEDULES: list[ScheduleDefinition] = []
