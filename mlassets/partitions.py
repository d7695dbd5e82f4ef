"""Partition definitions shared by assets, jobs and tests."""

from dagster import DailyPartitionsDefinition, StaticPartitionsDefinition

SUSY_CHUNK_COUNT = 4
SUSY_CHUNKS = StaticPartitionsDefinition([f"chunk-{i:02d}" for i in range(SUSY_CHUNK_COUNT)])
"""The chunks of the scaled SUSY test data (`chunk-00` ...), each one parquet directory in the lake."""

INFERENCE_DAYS = DailyPartitionsDefinition(start_date="2025-01-01", timezone="UTC", end_offset=1)
"""UTC days of `inferred_at` (today included, so the day's tables can be refreshed while it runs)."""
