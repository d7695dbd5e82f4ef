"""The IoT day tables of the inference records, counted on Spark: wrong inferences per producer and accuracy per
class, each row kept in Mongo and in the lake per UTC day, with the numbers their checks compare.

Plain code (no Dagster): the assets of mlassets/assets/iot/error_tables.py and the Pipes script
mlassets/pipes/scripts/producer_error_counts.py both call `write_day_table` with a `DayTable`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd
from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.database import Database

from mlassets.names import CLASS_ACCURACY_COLLECTION, INFERENCE_COLLECTION, WRONG_INFERENCE_STATS_COLLECTION

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
TOTALS_CHECK = "totals_match_records"

INFERENCE_FIELDS = {"_id": "string", "producer_id": "string", "GroundTruth": "string", "InferredValue": "string",
                    "inferred_at": "timestamp", "sent_at": "timestamp"}
"""The fields of an inference record the day tables read (name -> type); the connector projects only these."""


class LakeWriter(Protocol):
    """Where a day table's files go (mlassets.resources.LakeResource)."""

    def write_parquet(self, frame: pd.DataFrame, *parts: str) -> str: ...

    def write_bytes(self, data: bytes, *parts: str) -> str: ...


@dataclass(frozen=True)
class Window:
    """The span [start, end) of a run (a partition or a range of them), in timezone-aware datetimes."""

    start: dt.datetime
    end: dt.datetime

    def days(self) -> list[str]:
        """The UTC days (YYYY-MM-DD) the window covers."""
        first, last = self.start.date(), (self.end - dt.timedelta(microseconds=1)).date()
        return [(first + dt.timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]

    def mongo_filter(self) -> dict[str, Any]:
        """The Mongo filter of the window's records: inferred in it, or pending and sent in it."""
        span = {"$gte": self.start, "$lt": self.end}
        return {"$or": [{"inferred_at": span}, {"inferred_at": None, "sent_at": span}]}


def check_descriptions(rate: str) -> dict[str, str]:
    """The checks of a day table whose fraction column is `rate`: name -> what passing means."""
    return {TOTALS_CHECK: "the table's counts add up to the partition's records in MongoDB",
            f"{rate}_in_bounds": f"every {rate} is between 0 and 1"}


@dataclass(frozen=True)
class DayTable:
    """One day table: how the records are counted, where the rows go and which columns the checks read."""

    name: str  # the asset, and the lake folder of its days
    collection: str  # the Mongo collection of its rows, in the records' database
    key: str  # the column that, with the day, names a row (its Mongo _id is `<day>/<key>`)
    columns: Mapping[str, str]  # column -> description, in the table's order
    count: Callable[[Any], pd.DataFrame]  # the records (inference_days) -> the table
    inferred: str  # the count of inferred records; with `pending` it adds up to the window's records
    pending: str
    rate: str  # the fraction checked to be in [0, 1]

    @property
    def checks(self) -> dict[str, str]:
        return check_descriptions(self.rate)


@dataclass(frozen=True)
class CheckOutcome:
    """A check's result, for Dagster's AssetCheckResult or a Pipes report."""

    name: str
    passed: bool
    metadata: dict[str, int | float]


@dataclass(frozen=True)
class DayTableResult:
    """What one run wrote: the table's rows for the window's days, and the records Mongo holds for the window."""

    table: DayTable
    rows: pd.DataFrame
    days: list[str]
    records: int

    @property
    def counted(self) -> int:
        """The records the table accounts for: inferred plus pending."""
        return int(self.rows[self.table.inferred].sum() + self.rows[self.table.pending].sum())

    @property
    def days_label(self) -> str:
        return f"{self.days[0]} ... {self.days[-1]}" if len(self.days) > 1 else self.days[0]

    def checks(self) -> list[CheckOutcome]:
        """The table's counts add up to the window's records, and every rate is a fraction."""
        rates = self.rows[self.table.rate].dropna()
        totals, bounds = self.table.checks
        return [
            CheckOutcome(totals, self.counted == self.records,
                         {"counted": self.counted, "records_in_mongo": self.records}),
            CheckOutcome(bounds, bool(((rates >= 0) & (rates <= 1)).all()),
                         {"min": float(rates.min()) if len(rates) else 0.0,
                          "max": float(rates.max()) if len(rates) else 0.0}),
        ]


def inference_days(spark: Any, window: Window, database: str) -> Any:
    """The window's inference records as a Spark DataFrame with day, pending, wrong and correct columns."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType, TimestampType

    # Only the fields the counts need: the connector projects them, so image bytes are never read.
    types = {"string": StringType(), "timestamp": TimestampType()}
    schema = StructType([StructField(name, types[kind]) for name, kind in INFERENCE_FIELDS.items()])
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


PRODUCER_ERROR_COUNTS = DayTable(
    name="producer_error_counts", collection=WRONG_INFERENCE_STATS_COLLECTION, key="producer_id",
    columns=PRODUCER_COLUMNS, count=count_producer_errors, inferred="total_inferences", pending="pending_count",
    rate="error_rate")
CLASS_ACCURACY = DayTable(
    name="class_accuracy", collection=CLASS_ACCURACY_COLLECTION, key="class", columns=CLASS_COLUMNS,
    count=count_class_accuracy, inferred="total", pending="pending", rate="accuracy")


def replace_days(rows: pd.DataFrame, days: list[str], key: str, collection: Collection, lake_dir: str,
                 lake: LakeWriter) -> None:
    """Make each day's rows in the Mongo collection and the lake (`<dir>/<day>/` parquet, `<dir>/<day>.csv`) `rows`'."""
    for day in days:
        rows_of_day = rows[rows["day"] == day].reset_index(drop=True)
        docs = [{"_id": f"{day}/{row[key]}", **{k: (None if pd.isna(v) else v) for k, v in row.items()}}
                for row in rows_of_day.to_dict("records")]
        if docs:
            collection.bulk_write([ReplaceOne({"_id": d["_id"]}, d, upsert=True) for d in docs], ordered=False)
        collection.delete_many({"day": day, "_id": {"$nin": [d["_id"] for d in docs]}})
        lake.write_parquet(rows_of_day, lake_dir, day)
        lake.write_bytes(rows_of_day.to_csv(index=False).encode(), lake_dir, f"{day}.csv")


def write_day_table(table: DayTable, window: Window, spark: Any, database: Database, lake: LakeWriter
                    ) -> DayTableResult:
    """Count the window's days on Spark (records of `database`), replace their rows in Mongo and the lake, and count
    the window's records that the checks compare the table with."""
    rows = table.count(inference_days(spark, window, database.name))
    days = window.days()
    replace_days(rows, days, table.key, database[table.collection], table.name, lake)
    records = database[INFERENCE_COLLECTION].count_documents(window.mongo_filter())
    return DayTableResult(table, rows, days, records)
