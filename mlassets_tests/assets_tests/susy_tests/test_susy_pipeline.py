"""The SUSY group end to end on the real sample: topic, model from the topic, scaled chunks scored on Spark."""

import numpy as np
import pandas as pd
import pytest
from dagster import AssetKey, instance_for_test, materialize

from mlassets.assets.susy import (
    susy_dataset,
    susy_evaluation,
    susy_evaluation_summary,
    susy_model,
    susy_test_scaled,
    susy_train_topic,
)
from mlassets.datasets.susy import FEATURES
from mlassets.names import SUSY_DATABASE, SUSY_MODEL_COLLECTION, SUSY_MODEL_NAME
from mlassets.partitions import SUSY_CHUNKS
from mlassets.resources import DatasetsResource, KafkaResource, LakeParquetIOManager, LakeResource, MongoResource
from mlassets.models.store import ModelStoreError
from mlassets_tests.conftest import live_session

ASSETS = [susy_dataset, susy_train_topic, susy_model, susy_test_scaled, susy_evaluation, susy_evaluation_summary]
ROWS_PER_CHUNK = 4000  # two whole copies of the 2,000 test rows: pooled metrics equal the held-out ones


def _resources(stack, data_dir, local_resources, lake_root) -> dict:
    lake = LakeResource(root=str(lake_root))
    return {"datasets": DatasetsResource(data_dir=str(data_dir)), "mongo": MongoResource(uri=stack.mongo_uri),
            "kafka": KafkaResource(bootstrap_servers=stack.kafka_bootstrap), "lake": lake,
            "spark": local_resources["spark"],
            "io_manager": LakeParquetIOManager(lake=lake, spark=local_resources["spark"])}


@pytest.fixture(scope="module")
def pipeline(stack, data_dir, local_resources, spark_resource, tmp_path_factory):
    """One range run over every chunk, like the main run's steps: returns (result, instance, resources, topic)."""
    live_session(spark_resource)  # the process's session has S3A, for the S3 lake below
    topic = f"trainData-{tmp_path_factory.mktemp('x').name[-8:]}-{np.random.default_rng().integers(1e9)}"
    resources = _resources(stack, data_dir, local_resources, tmp_path_factory.mktemp("lake"))
    keys = SUSY_CHUNKS.get_partition_keys()
    with instance_for_test() as instance:
        result = materialize(
            ASSETS, resources=resources, instance=instance, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
            run_config={"ops": {
                # two producer processes: susy_model must train on exactly the ranges they recorded
                "susy_train_topic": {"config": {"topic": topic, "producer_processes": 2}},
                "susy_model": {"config": {"epochs": 3}},
                "susy_test_scaled": {"config": {"rows_per_chunk": ROWS_PER_CHUNK, "row_group_rows": 3000}},
                "susy_evaluation": {"config": {"arrow_batch_rows": 2500}},
            }},
        )
        yield result, instance, resources, topic


def test_the_run_succeeds_with_every_check_passing(pipeline) -> None:
    result, *_ = pipeline
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"all_rows_produced": True, "held_out_accuracy": True, "all_rows_scored": True,
                      "pooled_accuracy": True}


def test_the_topic_holds_exactly_the_train_split(pipeline) -> None:
    result, instance, *_ = pipeline
    ranges = result.output_for_node("susy_train_topic")
    assert ranges["rows"].sum() == 8000 and len(ranges) == 4
    assert (ranges["end_offset"] - ranges["start_offset"] == ranges["rows"]).all()
    metadata = instance.get_latest_materialization_event(AssetKey("susy_train_topic")).asset_materialization.metadata
    assert metadata["producer_processes"].value == 2


def test_the_model_is_a_new_version_with_weights_scaler_and_offsets(pipeline) -> None:
    result, _, resources, topic = pipeline
    record = result.output_for_node("susy_model").iloc[0]
    assert record["model_id"].startswith(f"{SUSY_MODEL_NAME}:v")
    store = resources["mongo"].model_store(SUSY_DATABASE, SUSY_MODEL_COLLECTION)
    loaded = store.load(record["model_id"])
    assert loaded.model.count_params() == 68_481
    assert loaded.model.loss == "binary_crossentropy"
    assert set(loaded.extras) == {"scaler_mean", "scaler_scale"} and loaded.extras["scaler_mean"].shape == (18,)
    assert loaded.record.code_version == "1"
    assert loaded.record.metrics["train_rows"] == 8000 and loaded.record.metrics["held_out_rows"] == 2000
    assert loaded.record.metrics["held_out_accuracy"] >= loaded.record.metrics["majority_share"] + 0.10
    offsets = loaded.record.metadata["offsets"]
    assert {o["topic"] for o in offsets} == {topic} and sum(o["end"] - o["start"] for o in offsets) == 8000


def test_evaluation_is_pooled_over_rows_and_uses_the_lineage_model(pipeline) -> None:
    result, instance, resources, _ = pipeline
    record = result.output_for_node("susy_model").iloc[0]
    summary = result.output_for_node("susy_evaluation_summary").set_index("chunk")
    assert list(summary.index) == [*SUSY_CHUNKS.get_partition_keys(), "all"]
    assert (summary["model_id"] == record["model_id"]).all()
    assert summary.loc["all", "rows"] == 4 * ROWS_PER_CHUNK
    # every chunk is two whole copies of the test split: pooled accuracy = held-out accuracy
    assert summary.loc["all", "accuracy"] == pytest.approx(record["held_out_accuracy"], abs=2e-3)
    assert summary.loc["all", "auc"] == pytest.approx(record["held_out_auc"], abs=2e-3)
    tp, fp, tn, fn = (int(summary.loc["all", c]) for c in ("tp", "fp", "tn", "fn"))
    assert tp + fp + tn + fn == 4 * ROWS_PER_CHUNK
    event = instance.get_latest_materialization_event(AssetKey("susy_evaluation"))
    metadata = event.asset_materialization.metadata
    assert metadata["model_id"].value == record["model_id"]
    assert metadata["max_model_loads_per_worker"].value == 1
    assert metadata["rows_per_s"].value > 0
    partitions = instance.get_materialized_partitions(AssetKey("susy_evaluation"))
    assert partitions == set(SUSY_CHUNKS.get_partition_keys())


def test_scaled_chunks_replicate_only_test_rows_with_per_chunk_seeds(pipeline) -> None:
    _, _, resources, _ = pipeline
    lake = resources["lake"]
    dataset = lake.read_parquet("susy_dataset")
    test_ids = set(dataset.loc[dataset["split"] == "test", "row_id"])
    first, second = (lake.read_parquet("susy_test_scaled", key) for key in SUSY_CHUNKS.get_partition_keys()[:2])
    assert len(first) == ROWS_PER_CHUNK and set(first["source_row_id"]) == test_ids
    assert first["source_row_id"].value_counts().eq(2).all()
    assert not (first["source_row_id"].to_numpy() == second["source_row_id"].to_numpy()).all()
    merged = first.merge(dataset, left_on="source_row_id", right_on="row_id", suffixes=("", "_src"))
    np.testing.assert_array_equal(merged["label"], merged["label_src"])
    np.testing.assert_array_equal(merged[list(FEATURES)].to_numpy(), merged[[f"{f}_src" for f in FEATURES]].to_numpy())


def test_both_readers_score_an_s3_lake_as_the_local_run(pipeline, stack, unique) -> None:
    """The chunks on the real S3 endpoint: the row-group tasks (pyarrow's S3 filesystem on the executors) and Spark's
    own reader (s3a) give the counts and histograms the local run gave."""
    result, instance, resources, _ = pipeline
    lake = LakeResource(root=f"s3://susy-{unique}/lake", endpoint_url=stack.s3_endpoint, access_key_id="local",
                        secret_access_key="local")
    lake.write_parquet(resources["lake"].read_parquet("susy_dataset"), "susy_dataset")
    lake.write_parquet(result.output_for_node("susy_model")[["model_id"]], "susy_model")
    s3 = {**resources, "lake": lake, "io_manager": LakeParquetIOManager(lake=lake, spark=resources["spark"])}
    keys = SUSY_CHUNKS.get_partition_keys()
    tags = {"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]}
    expected = pd.concat([resources["lake"].read_parquet("susy_evaluation", k) for k in keys], ignore_index=True)
    for reader, tasks in (("arrow", 8), ("spark", None)):
        ops = {"susy_test_scaled": {"config": {"rows_per_chunk": ROWS_PER_CHUNK, "row_group_rows": 3000}},
               "susy_evaluation": {"config": {"arrow_batch_rows": 2500, "reader": reader}}}
        run = materialize(ASSETS, selection=[susy_test_scaled, susy_evaluation], resources=s3, instance=instance,
                          tags=tags, run_config={"ops": ops})
        assert run.success and all(c.passed for c in run.get_asset_check_evaluations())
        metadata = instance.get_latest_materialization_event(AssetKey("susy_evaluation")).asset_materialization.metadata
        assert metadata["reader"].value == reader
        if tasks is not None:  # one task per row group: 4,000 rows in groups of 3,000 are 2 per chunk
            assert metadata["tasks"].value == tasks
        scored = pd.concat([lake.read_parquet("susy_evaluation", k) for k in keys], ignore_index=True)
        counts = ["chunk", "model_id", "rows", "tp", "fp", "tn", "fn"]
        assert scored[counts].equals(expected[counts]), (reader, scored[counts], expected[counts])
        for column in ("positive_hist", "negative_hist"):
            np.testing.assert_array_equal(np.stack(scored[column].to_list()), np.stack(expected[column].to_list()))


def test_a_retrain_is_a_new_version_and_tampered_weights_are_refused(pipeline) -> None:
    result, instance, resources, _ = pipeline
    first = result.output_for_node("susy_model").iloc[0]["model_id"]
    again = materialize(ASSETS, selection=[susy_model], resources=resources, instance=instance,
                        run_config={"ops": {"susy_model": {"config": {"epochs": 1}}}})
    second = again.output_for_node("susy_model").iloc[0]["model_id"]
    assert int(second.rsplit("v", 1)[1]) > int(first.rsplit("v", 1)[1])
    store = resources["mongo"].model_store(SUSY_DATABASE, SUSY_MODEL_COLLECTION)
    blob = store.blobs.find_one({"filename": second})
    data = bytearray(blob.read())
    data[len(data) // 2] ^= 0xFF
    store.blobs.delete(blob._id)
    store.blobs.put(bytes(data), filename=second)
    with pytest.raises(ModelStoreError, match="tampered"):
        store.load_bytes(second)
    store.blobs.delete(store.blobs.find_one({"filename": second})._id)
    with pytest.raises(ModelStoreError, match="missing"):
        store.load_bytes(second)
    # the evaluation takes the retrained version from lineage, so it fails clearly rather than scoring another model
    failed = materialize(ASSETS, selection=[susy_evaluation], resources=resources, instance=instance,
                         partition_key="chunk-00", raise_on_error=False)
    assert not failed.success
    errors = " ".join(str(e.event_specific_data.error) for e in failed.all_events if e.is_step_failure)
    assert f"model {second}: weights are missing from the store" in errors
