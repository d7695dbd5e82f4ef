"""producer_error_counts and class_accuracy: Spark over the Mongo records, idempotent day tables, the CLI range."""

import datetime as dt
import json
import os
import random
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize
from hypothesis import given
from hypothesis import strategies as st

from mlassets.assets.iot.error_tables import class_accuracy, producer_error_counts
from mlassets.datasets.cifar10 import LABELS
from mlassets.resources import LakeResource, MongoResource
from mlassets.stack import StackSettings
from mlassets.tables import error_tables
from mlassets.tables.error_tables import (CLASS_ACCURACY, CLASS_COLUMNS, PRODUCER_COLUMNS, PRODUCER_ERROR_COUNTS,
                                          Window, count_day_table)
from mlassets.tables.tallies import (CLASS_TALLY, PRODUCER_TALLY, RIGHT, WRONG, Tally, parse_tally, record_tallies,
                                     tally_key)
from mlassets_tests.conftest import dagster_cli

UTC = dt.timezone.utc


def record(id_: str, producer: str, truth: str, inferred: str | None, day: int, hour: int = 12) -> dict:
    """An inference document of 2026-11-<day>; no InferredValue and no inferred_at when pending."""
    at = dt.datetime(2026, 11, day, hour, tzinfo=UTC)
    doc = {"_id": id_, "producer_id": producer, "GroundTruth": truth, "sent_at": at - dt.timedelta(seconds=5)}
    if inferred is not None:
        doc.update(InferredValue=inferred, inferred_at=at, confidence=0.9, model_version="test:v1")
    return doc


RECORDS = [
    record("a1", "producer-1", "cat", "cat", 20), record("a2", "producer-1", "cat", "dog", 20),
    record("a3", "producer-1", "dog", "dog", 20), record("a4", "producer-1", "dog", None, 20),
    record("b1", "producer-2", "cat", "truck", 20, hour=0), record("b2", "producer-2", "ship", "ship", 20, hour=23),
    record("c1", "producer-1", "cat", "cat", 19), record("c2", "producer-3", "frog", "cat", 19),
    record("d1", "producer-1", "cat", "dog", 21),  # outside the range of the tests
]


@pytest.fixture
def database(stack: StackSettings, unique: str) -> str:
    name = f"image_database_{unique}"
    MongoResource(uri=stack.mongo_uri).client()[name]["inferences"].insert_many([dict(r) for r in RECORDS])
    return name


def _resources(local_resources: dict, lake_root: Path) -> dict:
    return {"spark": local_resources["spark"], "mongo": local_resources["mongo"],
            "lake": LakeResource(root=str(lake_root))}


def test_day_tables_count_wrong_pending_and_rates(local_resources: dict, spark, database: str, tmp_path: Path) -> None:
    config = {"ops": {name: {"config": {"database": database}}
                      for name in ("producer_error_counts", "class_accuracy")}}
    result = materialize([producer_error_counts, class_accuracy], partition_key="2026-11-20", run_config=config,
                         resources=_resources(local_resources, tmp_path))
    assert result.success
    assert all(check.passed for check in result.get_asset_check_evaluations())
    metadata = result.asset_materializations_for_node("producer_error_counts")[0].metadata
    # the fixture's records carry no tallies (as records written before them): all 6 of the day read one by one
    assert (metadata["records_counted_by_tallies"].value, metadata["records_read_one_by_one"].value) == (0, 6)
    producers = LakeResource(root=str(tmp_path)).read_parquet("producer_error_counts", "2026-11-20")
    assert producers.to_dict("records") == [
        {"day": "2026-11-20", "producer_id": "producer-1", "wrong_inference_count": 1, "total_inferences": 3,
         "pending_count": 1, "error_rate": pytest.approx(1 / 3)},
        {"day": "2026-11-20", "producer_id": "producer-2", "wrong_inference_count": 1, "total_inferences": 2,
         "pending_count": 0, "error_rate": 0.5},
    ]
    classes = pd.read_csv(tmp_path / "class_accuracy" / "2026-11-20.csv")
    assert classes[["class", "total", "correct", "pending"]].values.tolist() == [
        ["cat", 3, 1, 0], ["dog", 1, 1, 1], ["ship", 1, 1, 0]]
    stats = MongoResource(uri=local_resources["mongo"].uri).client()[database]["wrong_inference_stats"]
    assert sorted(d["_id"] for d in stats.find({})) == ["2026-11-20/producer-1", "2026-11-20/producer-2"]

    # a rerun after producer-2's records were re-inferred replaces the day's rows, leaving no stale producer
    inferences = stats.database["inferences"]
    inferences.delete_many({"producer_id": "producer-2"})
    inferences.update_one({"_id": "a4"}, {"$set": {"InferredValue": "cat", "inferred_at": dt.datetime(
        2026, 11, 20, 13, tzinfo=UTC)}})
    assert materialize([producer_error_counts], partition_key="2026-11-20", run_config={
        "ops": {"producer_error_counts": config["ops"]["producer_error_counts"]}},
        resources=_resources(local_resources, tmp_path)).success
    rows = list(stats.find({}, {"_id": 0, "computed_at": 0}))
    assert rows == [{"day": "2026-11-20", "producer_id": "producer-1", "wrong_inference_count": 2,
                     "total_inferences": 4, "pending_count": 0, "error_rate": 0.5}]


def test_partition_range_from_the_cli_is_one_run(stack: StackSettings, test_env: dict[str, str], database: str,
                                                 tmp_path: Path) -> None:
    home, lake = tmp_path / "home", tmp_path / "lake"
    home.mkdir()
    env = {**os.environ, **test_env, "MLASSETS_LAKE_ROOT": str(lake), "DAGSTER_HOME": str(home)}
    config = json.dumps({"ops": {"producer_error_counts": {"config": {"database": database}}}})
    result = dagster_cli(
        ["asset", "materialize", "--select", "producer_error_counts", "--partition-range", "2026-11-19...2026-11-20",
         "-m", "mlassets.definitions", "--config-json", config], env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        assert len(runs) == 1 and runs[0].is_success
        assert runs[0].tags["dagster/asset_partition_range_start"] == "2026-11-19"
        assert runs[0].tags["dagster/asset_partition_range_end"] == "2026-11-20"
    lake_resource = LakeResource(root=str(lake))
    day19 = lake_resource.read_parquet("producer_error_counts", "2026-11-19")
    assert day19[["producer_id", "wrong_inference_count", "total_inferences"]].values.tolist() == [
        ["producer-1", 0, 1], ["producer-3", 1, 1]]
    assert lake_resource.read_parquet("producer_error_counts", "2026-11-20")["total_inferences"].sum() == 5
    assert not (lake / "producer_error_counts" / "2026-11-21").exists()


@given(at=st.datetimes(min_value=dt.datetime(2000, 1, 2), max_value=dt.datetime(2099, 12, 30),
                       timezones=st.builds(dt.timezone, st.timedeltas(min_value=-dt.timedelta(hours=23),
                                                                      max_value=dt.timedelta(hours=23)))),
       producer=st.text(max_size=30), truth=st.sampled_from(LABELS), inferred=st.sampled_from(LABELS))
def test_the_tallies_name_the_utc_day_the_row_key_and_the_verdict(at: dt.datetime, producer: str, truth: str,
                                                                  inferred: str) -> None:
    day, verdict = at.astimezone(UTC).date().isoformat(), RIGHT if truth == inferred else WRONG
    tallies = record_tallies(at, producer, truth, inferred)
    assert parse_tally(tallies[PRODUCER_TALLY]) == Tally(day, producer, verdict)
    assert parse_tally(tallies[CLASS_TALLY]) == Tally(day, truth, verdict)


def test_what_cannot_be_tallied_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        tally_key(dt.datetime(2026, 11, 20), "producer-1", True)
    for value in ("not a tally", "2026-11-20|producer-1|", "20261120|p|right", "2026-11-20|cat|dog"):
        with pytest.raises(ValueError, match="not a tally"):
            parse_tally(value)


def _expected_tables(docs: list[dict], window: Window) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The two day tables of `docs` counted in plain Python (the oracle of the server's and Spark's counts)."""
    rows = []
    for doc in docs:
        at = doc.get("inferred_at") or doc["sent_at"]
        if window.start <= at < window.end:
            inferred = doc.get("InferredValue")
            rows.append({"day": at.date().isoformat(), "producer_id": doc["producer_id"], "class": doc["GroundTruth"],
                         "pending": inferred is None, "inferred": inferred is not None,
                         "correct": inferred == doc["GroundTruth"],
                         "wrong": inferred is not None and inferred != doc["GroundTruth"]})
    frame = pd.DataFrame(rows)
    producers = frame.groupby(["day", "producer_id"], as_index=False).agg(
        wrong_inference_count=("wrong", "sum"), total_inferences=("inferred", "sum"), pending_count=("pending", "sum"))
    producers["error_rate"] = producers["wrong_inference_count"] / producers["total_inferences"].where(
        producers["total_inferences"] > 0)
    classes = frame.groupby(["day", "class"], as_index=False).agg(
        total=("inferred", "sum"), correct=("correct", "sum"), pending=("pending", "sum"))
    classes["accuracy"] = classes["correct"] / classes["total"].where(classes["total"] > 0)
    return producers[list(PRODUCER_COLUMNS)], classes[list(CLASS_COLUMNS)]


def test_tallied_records_are_counted_on_the_server_and_the_rest_one_by_one(stack: StackSettings, spark,
                                                                            unique: str) -> None:
    """Generated records over three days: tallied as the drain writes them, without tallies (pending, or written by
    anything else), with malformed tallies or ones of another type; the tables equal a plain count of the records."""
    rng = random.Random(17)
    docs = []
    for i in range(300):
        inferred = rng.choice([*LABELS[:4], None])
        doc = record(f"r{i}", rng.choice(["producer-1", "producer|2", "producer\n3"]), rng.choice(LABELS[:4]),
                     inferred, rng.choice([19, 20, 21]), rng.randrange(24))
        kind = rng.choices(["tallied", "none", "malformed", "number"], weights=[6, 2, 1, 1])[0]
        if kind == "tallied" and inferred is not None:
            doc.update(record_tallies(doc["inferred_at"], doc["producer_id"], doc["GroundTruth"], inferred))
        elif kind in ("malformed", "number"):
            doc.update(dict.fromkeys((PRODUCER_TALLY, CLASS_TALLY), "2026-11-20|cat" if kind == "malformed" else 7))
        docs.append(doc)
    database = f"tallies_{unique}"
    MongoResource(uri=stack.mongo_uri).client()[database]["inferences"].insert_many([dict(d) for d in docs])
    window = Window(dt.datetime(2026, 11, 20, tzinfo=UTC), dt.datetime(2026, 11, 22, tzinfo=UTC))

    # the server groups the window's tallied records itself: only a row per tally leaves it
    in_window = [d for d in docs if window.start <= (d.get("inferred_at") or d["sent_at"]) < window.end]
    tallied = [d for d in in_window if str(d.get(PRODUCER_TALLY)).endswith(("|right", "|wrong"))]
    groups = error_tables._server_tallies(spark, window, database, PRODUCER_TALLY)
    assert sum(n for value, n in groups if str(value).endswith(("|right", "|wrong"))) == len(tallied) > 50
    # 2 days x 3 producers x 2 verdicts, and the records without a tally, with the malformed one, with the number
    assert len(groups) <= 15 and sum(n for _, n in groups) == len(in_window)

    producers, classes = _expected_tables(docs, window)
    for on_server in (True, False):
        counted = count_day_table(PRODUCER_ERROR_COUNTS, spark, window, database, on_server)
        pd.testing.assert_frame_equal(counted.rows, producers, check_dtype=False)
        assert (counted.by_tallies, counted.one_by_one) == (
            (len(tallied), len(in_window) - len(tallied)) if on_server else (0, len(in_window)))
        pd.testing.assert_frame_equal(count_day_table(CLASS_ACCURACY, spark, window, database, on_server).rows,
                                      classes, check_dtype=False)
