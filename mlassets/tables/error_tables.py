"""The IoT day tables of the inference records: wrong inferences per producer and accuracy per class, each row kept in
Mongo and in the lake per UTC day, with the numbers their checks compare. The server counts the records by the
tallies the drain writes into them (mlassets/tables/tallies.py), read through Spark's connector; Spark counts the
records that have none.

Plain code (no Dagster): the assets of mlassets/assets/iot/error_tables.py and the Pipes script
mlassets/pipes/scripts/producer_error_counts.py both call `write_day_table` with a `DayTable`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

import pandas as pd
from bson import json_util
from pymongo import ReplaceOne
from pymongo.collection import Collection
from pymongo.database import Database

from mlassets.names import CLASS_ACCURACY_COLLECTION, INFERENCE_COLLECTION, WRONG_INFERENCE_STATS_COLLECTION
from mlassets.tables.tallies import CLASS_TALLY, PENDING, PRODUCER_TALLY, RIGHT, WRONG, parse_tally

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
    source: str  # the record field the key is read from
    tally: str  # the record field of the table's tally (mlassets.tables.tallies)
    columns: Mapping[str, str]  # column -> description, in the table's order
    count: Callable[[pd.DataFrame], pd.DataFrame]  # the verdict counts (verdict_counts) -> the table
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
class Counted:
    """Rows counted from a window's records, and how many of those records the server's tallies and Spark counted."""

    rows: pd.DataFrame
    by_tallies: int  # the window's records the server counted by their tallies
    one_by_one: int  # the window's records without a well-formed tally, read one by one and counted on Spark


@dataclass(frozen=True)
class DayTableResult(Counted):
    """What one run wrote: the table's rows for the window's days (as counted), and the records Mongo holds for the
    window."""

    table: DayTable
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


VERDICT_COLUMNS = ("day", "key", RIGHT, WRONG, PENDING)
"""The window's records counted per (day, row key) and verdict: what every day table is computed from."""


def _inferences(spark: Any, database: str, schema: Any, pipeline: list[dict[str, Any]]) -> Any:
    """The `inferences` collection of `database` read through `pipeline` (which runs on the server), as `schema`."""
    return (spark.read.format("mongodb").schema(schema).option("database", database)
            .option("collection", INFERENCE_COLLECTION).option("aggregation.pipeline", json_util.dumps(pipeline))
            .load())


def _server_tallies(spark: Any, window: Window, database: str, tally: str) -> list[tuple[Any, int]]:
    """The window's records grouped on the server by their `tally` field: (tally, records) pairs, the tally None for
    the records without one."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType([StructField("_id", StringType()), StructField("n", LongType())])
    return [(value, n) for value, n in _inferences(spark, database, schema, [
        {"$match": window.mongo_filter()}, {"$group": {"_id": f"${tally}", "n": {"$sum": 1}}}]).collect()]


def _record_verdicts(spark: Any, window: Window, database: str, source: str, match: dict[str, Any]
                     ) -> list[tuple[str, Any, str, int]]:
    """The window's records that also match `match`, read one by one and counted on Spark per (day, `source`,
    verdict): (day, key, verdict, records) tuples."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType, TimestampType

    # Only the fields the counts need: the connector projects them, so image bytes are never read.
    types = {"string": StringType(), "timestamp": TimestampType()}
    schema = StructType([StructField(name, types[kind]) for name, kind in INFERENCE_FIELDS.items()])
    records = _inferences(spark, database, schema, [{"$match": match}] if match else [])
    start, end = F.lit(window.start).cast("timestamp"), F.lit(window.end).cast("timestamp")
    inferred = (F.col("inferred_at") >= start) & (F.col("inferred_at") < end)
    pending_sent = F.col("inferred_at").isNull() & (F.col("sent_at") >= start) & (F.col("sent_at") < end)
    # The day from epoch seconds, so the session time zone cannot move records between days.
    epoch_day = F.floor(F.unix_timestamp(F.coalesce("inferred_at", "sent_at")) / 86400).cast("int")
    day = F.date_format(F.date_add(F.lit("1970-01-01").cast("date"), epoch_day), "yyyy-MM-dd")
    verdict = (F.when(F.col("InferredValue").isNull(), PENDING)
               .when(F.col("InferredValue") == F.col("GroundTruth"), RIGHT).otherwise(WRONG))
    counts = records.where(inferred | pending_sent).groupBy(day.alias("day"), F.col(source).alias("key"),
                                                             verdict.alias("verdict")).count()
    return [tuple(row) for row in counts.collect()]


def verdict_counts(table: DayTable, spark: Any, window: Window, database: str, on_server: bool = True) -> Counted:
    """The window's inference records counted per (day, the table's row key) and verdict: VERDICT_COLUMNS, sorted.

    The server groups the records by the table's tally, which the drain writes into each; only the records without
    a well-formed one (pending ones, or written by anything else) leave the server, one by one, projected to
    INFERENCE_FIELDS, and are counted on Spark. `on_server=False` reads every record one by one instead (how the
    tables were counted before the tallies).
    """
    tallied: list[tuple[str, Any, str, int]] = []
    one_by_one: list[tuple[str, Any, str, int]] = []
    if on_server:
        values, others = [], []
        for value, n in _server_tallies(spark, window, database, table.tally):
            try:
                tallied.append((*parse_tally(value), n))
                values.append(value)
            except (TypeError, ValueError):  # no tally (None), or a value the drain does not write
                others.append(value)
        if others:  # $nin also matches a missing tally and one of another BSON type
            match = {table.tally: None} if others == [None] else {table.tally: {"$nin": values}}
            one_by_one = _record_verdicts(spark, window, database, table.source, match)
    else:
        one_by_one = _record_verdicts(spark, window, database, table.source, {})
    totals: dict[tuple[str, Any], dict[str, int]] = {}
    for day, key, verdict, n in tallied + one_by_one:
        totals.setdefault((day, key), dict.fromkeys((RIGHT, WRONG, PENDING), 0))[verdict] += n
    ordered = sorted(totals.items(), key=lambda item: (item[0][0], item[0][1] is None, item[0][1] or ""))
    verdicts = pd.DataFrame([(day, key, *counts.values()) for (day, key), counts in ordered],
                            columns=list(VERDICT_COLUMNS)).astype({RIGHT: "int64", WRONG: "int64", PENDING: "int64"})
    return Counted(verdicts, sum(n for *_, n in tallied), sum(n for *_, n in one_by_one))


def count_producer_errors(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdict counts (verdict_counts, keyed by producer) as the table of wrong, inferred and pending records
    per (day, producer_id), with the error rate."""
    inferred = verdicts[RIGHT] + verdicts[WRONG]
    counts = pd.DataFrame({"day": verdicts["day"], "producer_id": verdicts["key"],
                           "wrong_inference_count": verdicts[WRONG], "total_inferences": inferred,
                           "pending_count": verdicts[PENDING]})
    counts["error_rate"] = (counts["wrong_inference_count"] / inferred.where(inferred > 0)).astype("float64")
    return counts[list(PRODUCER_COLUMNS)]


def count_class_accuracy(verdicts: pd.DataFrame) -> pd.DataFrame:
    """The verdict counts (verdict_counts, keyed by ground-truth class) as the table of inferred, correct and pending
    records per (day, class), with the accuracy."""
    inferred = verdicts[RIGHT] + verdicts[WRONG]
    counts = pd.DataFrame({"day": verdicts["day"], "class": verdicts["key"], "total": inferred,
                           "correct": verdicts[RIGHT], "pending": verdicts[PENDING]})
    counts["accuracy"] = (counts["correct"] / inferred.where(inferred > 0)).astype("float64")
    return counts[list(CLASS_COLUMNS)]


def count_day_table(table: DayTable, spark: Any, window: Window, database: str, on_server: bool = True) -> Counted:
    """The table's rows for the window's records (see verdict_counts)."""
    counted = verdict_counts(table, spark, window, database, on_server)
    return replace(counted, rows=table.count(counted.rows))


PRODUCER_ERROR_COUNTS = DayTable(
    name="producer_error_counts", collection=WRONG_INFERENCE_STATS_COLLECTION, key="producer_id",
    source="producer_id", tally=PRODUCER_TALLY, columns=PRODUCER_COLUMNS, count=count_producer_errors,
    inferred="total_inferences", pending="pending_count", rate="error_rate")
CLASS_ACCURACY = DayTable(
    name="class_accuracy", collection=CLASS_ACCURACY_COLLECTION, key="class", source="GroundTruth",
    tally=CLASS_TALLY, columns=CLASS_COLUMNS, count=count_class_accuracy, inferred="total", pending="pending",
    rate="accuracy")


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
    """Count the window's days (records of `database`; see verdict_counts), replace their rows in Mongo and the lake,
    and count the window's records that the checks compare the table with."""
    counted = count_day_table(table, spark, window, database.name)
    days = window.days()
    replace_days(counted.rows, days, table.key, database[table.collection], table.name, lake)
    records = database[INFERENCE_COLLECTION].count_documents(window.mongo_filter())
    return DayTableResult(**vars(counted), table=table, days=days, records=records)
