"""Per-day error tables of the inference records: wrong inferences per producer and accuracy per class (Spark)."""

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pandas as pd
from dagster import (AssetCheckResult, AssetCheckSpec, AssetExecutionContext, BackfillPolicy, Config,
                     MaterializeResult, MetadataValue, TimeWindow, asset)
from pydantic import Field
from pymongo import ReplaceOne
from pymongo.collection import Collection

from mlassets.assets.iot.inference import INFERENCE_COLLECTION, INFERENCE_DATABASE, inference_records
from mlassets.automation import DAY_TABLES, RECORDS_FRESHNESS
from mlassets.metadata import column_schema, markdown_table
from mlassets.partitions import INFERENCE_DAYS
from mlassets.resources import LakeResource, MongoResource, SparkResource

PRODUCER_COLUMNS = {
    "day": "UTC day of inferred_at (sent_at for pending records)",
    "producer_id": "producer that sent the images",
    "wrong_inference_count": "records whose InferredValue differs from GroundTruth",
    "total_inferences": "records with an inference",
    "pending_count": "records without an inference yet (never counted as correct)",
    "error_rate": "wrong_inference_count / total_inferences, a fraction in [0, 1]; null when nothing was inferred",
}
CLASS_COLUMNS = {
    "day": "UTC day of inferred_at (sent_at for pending records)",
    "class": "ground-truth class",
    "total": "records of the class with an inference",
    "correct": "records whose InferredValue equals GroundTruth",
    "pending": "records of the class without an inference yet",
    "accuracy": "correct / total, a fraction in [0, 1]; null when nothing was inferred",
}


class DayTablesConfig(Config):
    """Where the inference records are and where the day tables go (both in one Mongo database)."""

    database: str = Field(default=INFERENCE_DATABASE, description="Mongo database of `inferences` and the tables.")


def days_of(window: TimeWindow) -> list[str]:
    """The UTC days (YYYY-MM-DD) a partition time window covers."""
    first, last = window.start.date(), (window.end - dt.timedelta(microseconds=1)).date()
    return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]


def window_filter(window: TimeWindow) -> dict[str, Any]:
    """The Mongo filter of the window's records: inferred in it, or pending and sent in it."""
    span = {"$gte": window.start, "$lt": window.end}
    return {"$or": [{"inferred_at": span}, {"inferred_at": None, "sent_at": span}]}


def inference_days(spark: Any, window: TimeWindow, database: str = INFERENCE_DATABASE) -> Any:
    """The window's inference records as a Spark DataFrame with day, pending, wrong and correct columns."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType, TimestampType

    # Only the fields the counts need: the connector projects them, so image bytes are never read.
    schema = StructType([StructField(name, typ) for name, typ in [
        ("_id", StringType()), ("producer_id", StringType()), ("GroundTruth", StringType()),
        ("InferredValue", StringType()), ("inferred_at", TimestampType()), ("sent_at", TimestampType()),
    ]])
    start, end = F.lit(window.start).cast("timestamp"), F.lit(window.end).cast("timestamp")
    records = (spark.read.format("mongodb").schema(schema)
               .option("database", database).option("collection", INFERENCE_COLLECTION).load())
    inferred = (F.col("inferred_at") >= start) & (F.col("inferred_at") < end)
    pending_sent = F.col("inferred_at").isNull() & (F.col("sent_at") >= start) & (F.col("sent_at") < end)
    # The day from epoch seconds, so the session time zone cannot move records between days.
    epoch_day = F.floor(F.unix_timestamp(F.coalesce("inferred_at", "sent_at")) / 86400).cast("int")
    pending = F.col("InferredValue").isNull()
    return (records.where(inferred | pending_sent)
            .withColumn("day", F.date_format(F.date_add(F.lit("1970-01-01").cast("date"), epoch_day), "yyyy-MM-dd"))
            .withColumn("pending", pending)
            .withColumn("wrong", ~pending & (F.col("InferredValue") != F.col("GroundTruth")))
            .withColumn("correct", ~pending & (F.col("InferredValue") == F.col("GroundTruth"))))


def count_producer_errors(records: Any) -> pd.DataFrame:
    """MapReduce of the records per (day, producer_id): wrong, inferred and pending counts and the error rate."""
    from pyspark.sql import functions as F

    counts = (records.groupBy("day", "producer_id").agg(
        F.sum(F.col("wrong").cast("long")).alias("wrong_inference_count"),
        F.sum((~F.col("pending")).cast("long")).alias("total_inferences"),
        F.sum(F.col("pending").cast("long")).alias("pending_count"),
    ).orderBy("day", "producer_id").toPandas())
    counts = counts.astype({"wrong_inference_count": "int64", "total_inferences": "int64", "pending_count": "int64"})
    counts["error_rate"] = (counts["wrong_inference_count"] / counts["total_inferences"].where(
        counts["total_inferences"] > 0)).astype("float64")
    return counts[list(PRODUCER_COLUMNS)]


def count_class_accuracy(records: Any) -> pd.DataFrame:
    """MapReduce of the records per (day, ground-truth class): inferred, correct and pending counts, accuracy."""
    from pyspark.sql import functions as F

    counts = (records.groupBy("day", F.col("GroundTruth").alias("class")).agg(
        F.sum((~F.col("pending")).cast("long")).alias("total"),
        F.sum(F.col("correct").cast("long")).alias("correct"),
        F.sum(F.col("pending").cast("long")).alias("pending"),
    ).orderBy("day", "class").toPandas())
    counts = counts.astype({"total": "int64", "correct": "int64", "pending": "int64"})
    counts["accuracy"] = (counts["correct"] / counts["total"].where(counts["total"] > 0)).astype("float64")
    return counts[list(CLASS_COLUMNS)]


def replace_days(table: pd.DataFrame, days: list[str], key: str, collection: Collection, lake_dir: str,
                 lake: LakeResource) -> None:
    """Make each day's rows in the Mongo collection and the lake (`<dir>/<day>/` parquet, `<dir>/<day>.csv`) `table`'s."""
    for day in days:
        rows = table[table["day"] == day].reset_index(drop=True)
        docs = [{"_id": f"{day}/{row[key]}", **{k: (None if pd.isna(v) else v) for k, v in row.items()}}
                for row in rows.to_dict("records")]
        if docs:
            collection.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=False)
        collection.delete_many({"day": day, "_id": {"$nin": [d["_id"] for d in docs]}})
        lake.write_parquet(rows, lake_dir, day)
        lake.write_bytes(rows.to_csv(index=False).encode(), lake_dir, f"{day}.csv")


def table_checks(table: pd.DataFrame, counted: int, expected: int, rate: str) -> list[AssetCheckResult]:
    """The checks of a day table: its counts add up to the window's records, and the rate is a fraction."""
    rates = table[rate].dropna()
    return [
        AssetCheckResult(check_name="totals_match_records", passed=counted == expected,
                         metadata={"counted": counted, "records_in_mongo": expected}),
        AssetCheckResult(check_name=f"{rate}_in_bounds", passed=bool(((rates >= 0) & (rates <= 1)).all()),
                         metadata={"min": float(rates.min()) if len(rates) else 0.0,
                                   "max": float(rates.max()) if len(rates) else 0.0}),
    ]


def _day_table_asset(name: str, rate: str) -> dict[str, Any]:
    """The @asset arguments both day tables share: daily partitions, one run per range, the two checks."""
    return {
        "deps": [inference_records],
        "partitions_def": INFERENCE_DAYS,
        "backfill_policy": BackfillPolicy.single_run(),
        "automation_condition": DAY_TABLES,
        "freshness_policy": RECORDS_FRESHNESS,
        "kinds": {"spark", "mongodb", "parquet"},
        "check_specs": [
            AssetCheckSpec("totals_match_records", asset=name,
                           description="the table's counts add up to the partition's records in MongoDB"),
            AssetCheckSpec(f"{rate}_in_bounds", asset=name, description=f"every {rate} is between 0 and 1"),
        ],
    }


def _day_table(context: AssetExecutionContext, config: DayTablesConfig, spark: SparkResource, mongo: MongoResource,
               lake: LakeResource, count: Callable[[Any], pd.DataFrame], key: str, collection: str,
               columns: dict[str, str], inferred: str, pending: str, rate: str
               ) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Count the partition's days on Spark, replace their rows in Mongo and the lake, and check the table."""
    window = context.partition_time_window
    days = days_of(window)
    table = count(inference_days(spark.spark_session, window, config.database))
    database = mongo.client()[config.database]
    replace_days(table, days, key, database[collection], context.asset_key.to_user_string(), lake)
    expected = database[INFERENCE_COLLECTION].count_documents(window_filter(window))
    counted = int(table[inferred].sum() + table[pending].sum())
    preview = markdown_table(table, max_rows=50)
    context.log.info("\n" + preview)
    yield MaterializeResult(metadata={
        "dagster/row_count": len(table),
        "dagster/column_schema": column_schema(table, columns),
        "days": f"{days[0]} ... {days[-1]}" if len(days) > 1 else days[0],
        "table": MetadataValue.md(preview),
        "mongo_collection": f"{config.database}.{collection}",
    })
    yield from table_checks(table, counted, expected, rate)


@asset(**_day_table_asset("producer_error_counts", "error_rate"))
def producer_error_counts(context: AssetExecutionContext, config: DayTablesConfig, spark: SparkResource,
                          mongo: MongoResource, lake: LakeResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Per UTC day and producer: wrong inferences, inferred and pending records, error rate (fraction)."""
    yield from _day_table(context, config, spark, mongo, lake, count_producer_errors, "producer_id",
                          "wrong_inference_stats", PRODUCER_COLUMNS, "total_inferences", "pending_count", "error_rate")


@asset(**_day_table_asset("class_accuracy", "accuracy"))
def class_accuracy(context: AssetExecutionContext, config: DayTablesConfig, spark: SparkResource,
                   mongo: MongoResource, lake: LakeResource) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Per UTC day and ground-truth class: inferred, correct and pending records, and the accuracy (fraction)."""
    yield from _day_table(context, config, spark, mongo, lake, count_class_accuracy, "class", "class_accuracy",
                          CLASS_COLUMNS, "total", "pending", "accuracy")
