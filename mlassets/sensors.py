"""Sensors of the code location: Kafka offsets that request runs."""

from dagster import SensorDefinition

SENSORS: list[SensorDefinition] = []
