"""producer_error_counts and class_accuracy: Spark over the Mongo records, idempotent day tables, the CLI range."""

import datetime as dt
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from dagster import DagsterInstance, materialize

from mlassets.assets.iot.error_tables import class_accuracy, producer_error_counts
from mlassets.resources import LakeResource, MongoResource
from mlassets.stack import StackSettings
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
