"""The Spark session resource: dagster-pyspark's lazily created session, configured per environment."""

from __future__ import annotations

from dagster_pyspark import LazyPySparkResource

SparkResource = LazyPySparkResource

__all__ = ["SparkResource"]
