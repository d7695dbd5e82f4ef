"""Per-day error tables of the inference records: wrong inferences per producer and accuracy per class (the server
counts the tallied records, Spark the rest).

The counting and the checks are mlassets/tables/error_tables.py (no Dagster), shared with the Pipes script.
"""

from collections.abc import Iterator
from typing import Any

from dagster import (AssetCheckResult, AssetCheckSpec, AssetExecutionContext, BackfillPolicy, Config,
                     MaterializeResult, MetadataValue, asset)
from pydantic import Field

from mlassets.assets.iot.inference import inference_records
from mlassets.automation import DAY_TABLES, RECORDS_FRESHNESS, SPARK_POOL, TRANSIENT_RETRY
from mlassets.metadata import column_schema, markdown_table
from mlassets.names import IMAGE_DATABASE
from mlassets.partitions import INFERENCE_DAYS
from mlassets.resources import LakeResource, MongoResource, SparkResource
from mlassets.tables.error_tables import (CLASS_ACCURACY, PRODUCER_ERROR_COUNTS, DayTable, Window,
                                          check_descriptions, write_day_table)


class DayTablesConfig(Config):
    """Where the inference records are and where the day tables go (both in one Mongo database)."""

    database: str = Field(default=IMAGE_DATABASE, description="Mongo database of `inferences` and the tables.")


def _day_table_asset(name: str, rate: str) -> dict[str, Any]:
    """The @asset arguments both day tables share: daily partitions, one run per range, the two checks."""
    return {
        "deps": [inference_records],
        "partitions_def": INFERENCE_DAYS,
        "backfill_policy": BackfillPolicy.single_run(),
        "automation_condition": DAY_TABLES,
        "freshness_policy": RECORDS_FRESHNESS,
        "pool": SPARK_POOL,
        "retry_policy": TRANSIENT_RETRY,
        "kinds": {"spark", "mongodb", "parquet"},
        "check_specs": [AssetCheckSpec(check, asset=name, description=description)
                        for check, description in check_descriptions(rate).items()],
    }


def _day_table(context: AssetExecutionContext, config: DayTablesConfig, spark: SparkResource, mongo: MongoResource,
               lake: LakeResource, table: DayTable) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Count the partition's days (mlassets.tables.error_tables), replace their rows in Mongo and the lake, and check
    the table."""
    span = context.partition_time_window
    result = write_day_table(table, Window(span.start, span.end), spark.spark_session,
                             mongo.client()[config.database], lake)
    preview = markdown_table(result.rows, max_rows=50)
    context.log.info("\n" + preview)
    yield MaterializeResult(metadata={
        "dagster/row_count": len(result.rows),
        "dagster/column_schema": column_schema(result.rows, dict(table.columns)),
        "days": result.days_label,
        "records_counted_by_tallies": result.by_tallies,
        "records_read_one_by_one": result.one_by_one,
        "table": MetadataValue.md(preview),
        "mongo_collection": f"{config.database}.{table.collection}",
    })
    for check in result.checks():
        yield AssetCheckResult(check_name=check.name, passed=check.passed, metadata=check.metadata)


@asset(**_day_table_asset("producer_error_counts", "error_rate"))
def producer_error_counts(context: AssetExecutionContext, config: DayTablesConfig, spark: SparkResource,
                          mongo: MongoResource, lake: LakeResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Per UTC day and producer: wrong inferences, inferred and pending records, error rate (fraction)."""
    yield from _day_table(context, config, spark, mongo, lake, PRODUCER_ERROR_COUNTS)


@asset(**_day_table_asset("class_accuracy", "accuracy"))
def class_accuracy(context: AssetExecutionContext, config: DayTablesConfig, spark: SparkResource,
                   mongo: MongoResource, lake: LakeResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Per UTC day and ground-truth class: inferred, correct and pending records, and the accuracy (fraction)."""
    yield from _day_table(context, config, spark, mongo, lake, CLASS_ACCURACY)
