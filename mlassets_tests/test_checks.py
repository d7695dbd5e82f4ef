"""Blocking checks on the real assets and the real stack: a bad model is neither scored nor served in the same run."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from dagster import (AssetSelection, DagsterEventType, ExecuteInProcessResult, instance_for_test,
                     materialize)

from mlassets.assets.iot import cifar10_images, cifar_classifier, inference_records
from mlassets.assets.susy import (susy_dataset, susy_evaluation, susy_evaluation_summary, susy_model, susy_test_scaled,
                                  susy_train_topic)
from mlassets.checks import INTEGRITY_CHECK, cifar_classifier_intact, stored_model_result, susy_model_intact
from mlassets.definitions import defs
from mlassets.names import CIFAR_MODEL_COLLECTION, IMAGE_DATABASE
from mlassets.partitions import SUSY_CHUNKS
from mlassets.resources import DatasetsResource, KafkaResource, LakeParquetIOManager, LakeResource, MongoResource


def materialized(result: ExecuteInProcessResult) -> set[str]:
    return {event.asset_key.to_user_string() for event in result.get_asset_materialization_events()}


def checks(result: ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    return {(c.asset_key.to_user_string(), c.check_name): c.passed for c in result.get_asset_check_evaluations()}


def started(result: ExecuteInProcessResult) -> set[str]:
    return {event.step_key for event in result.all_events if event.event_type == DagsterEventType.STEP_START}


def failure_messages(result: ExecuteInProcessResult) -> str:
    """The messages of every step failure, with their causes."""
    texts = []
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_FAILURE:
            error = event.step_failure_data.error
            while error is not None:
                texts.append(error.message)
                error = error.cause
            if event.step_failure_data.user_failure_data:
                texts.append(event.step_failure_data.user_failure_data.description or "")
    return "\n".join(texts)


def failed_steps(result: ExecuteInProcessResult) -> dict[str, str]:
    """Each failed step with the class of its error."""
    return {event.step_key: event.step_failure_data.error.cls_name for event in result.all_events
            if event.event_type == DagsterEventType.STEP_FAILURE}


def test_the_model_checks_that_gate_scoring_and_serving_are_blocking():
    graph = defs.resolve_asset_graph()
    blocking = {(key.asset_key.to_user_string(), key.name) for key in graph.asset_check_keys
                if graph.get_check_spec(key).blocking}
    assert blocking == {("susy_model", "held_out_accuracy"), ("susy_model", INTEGRITY_CHECK),
                        ("cifar_classifier", "held_out_accuracy"), ("cifar_classifier", INTEGRITY_CHECK),
                        ("susy_evaluation", "all_rows_scored")}


@pytest.fixture
def resources(stack, data_dir, local_resources, tmp_path) -> dict:
    lake = LakeResource(root=str(tmp_path / "lake"))
    return {"datasets": DatasetsResource(data_dir=str(data_dir)), "mongo": MongoResource(uri=stack.mongo_uri),
            "kafka": KafkaResource(bootstrap_servers=stack.kafka_bootstrap), "lake": lake,
            "spark": local_resources["spark"],
            "io_manager": LakeParquetIOManager(lake=lake, spark=local_resources["spark"])}


def test_a_susy_model_below_the_majority_share_is_not_scored(resources):
    """An untrained MLP (learning rate 1e-12) fails held_out_accuracy: the chunks are written, never scored."""
    keys = SUSY_CHUNKS.get_partition_keys()
    with instance_for_test() as instance:
        result = materialize(
            [susy_dataset, susy_train_topic, susy_model, susy_model_intact, susy_test_scaled, susy_evaluation,
             susy_evaluation_summary],
            resources=resources, instance=instance, raise_on_error=False,
            tags={"dagster/asset_partition_range_start": keys[0], "dagster/asset_partition_range_end": keys[-1]},
            run_config={"ops": {
                "susy_train_topic": {"config": {"topic": f"trainData-blocking-{uuid.uuid4().hex[:8]}",
                                                "max_rows": 2000}},
                "susy_model": {"config": {"epochs": 1, "learning_rate": 1e-12}},
                "susy_test_scaled": {"config": {"rows_per_chunk": 500}},
            }},
        )
    assert checks(result)[("susy_model", "held_out_accuracy")] is False
    assert failed_steps(result) == {"susy_model": "DagsterAssetCheckFailedError"}
    # The model version is recorded (and flagged in the UI); nothing below it ran.
    assert materialized(result) == {"susy_dataset", "susy_train_topic", "susy_model", "susy_test_scaled"}
    assert not started(result) & {"susy_evaluation", "susy_evaluation_summary"}

    # Scoring it later (a backfill, or automation after a manual run) is refused at once, naming the check.
    with instance_for_test() as instance:
        later = materialize([susy_dataset, susy_train_topic, susy_model, susy_test_scaled, susy_evaluation],
                            resources=resources, instance=instance,
                            raise_on_error=False, selection=AssetSelection.assets(susy_evaluation),
                            partition_key=keys[0])
    assert list(failed_steps(later)) == ["susy_evaluation"]
    assert not [e for e in later.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    assert "failed its blocking check(s) held_out_accuracy" in failure_messages(later)


def test_a_weak_or_tampered_cifar_classifier_is_not_served(resources, test_env):
    """Run 1: a classifier trained on 32 images fails held_out_accuracy, so inference_records does not drain.
    Run 2: its stored weights pass the integrity check until their sha256 no longer matches; then the integrity
    check fails and inference_records, run with it, is again not executed."""
    topic = f"image_data-blocking-{uuid.uuid4().hex[:8]}"
    assets = [cifar10_images, cifar_classifier, cifar_classifier_intact, inference_records]
    with instance_for_test() as instance:
        first = materialize(assets, resources=resources, instance=instance, raise_on_error=False, run_config={"ops": {
            "cifar_classifier": {"config": {"epochs": 1, "train_images": 32, "blocks_per_stage": 1}},
            "inference_records": {"config": {"topic": topic}},
        }})
        assert checks(first)[("cifar_classifier", "held_out_accuracy")] is False
        assert failed_steps(first) == {"cifar_classifier": "DagsterAssetCheckFailedError"}
        assert materialized(first) == {"cifar10_images", "cifar_classifier"}
        assert "inference_records" not in started(first)

        # A later run of inference_records alone (what the lag sensor or automation launches) loads the same version
        # from the lake; the store refuses it, and the step fails at once (no transient retries), naming the check.
        later = materialize(assets, resources=resources, instance=instance, raise_on_error=False,
                            selection=AssetSelection.assets(inference_records),
                            run_config={"ops": {"inference_records": {"config": {"topic": topic}}}})
        assert not later.success and materialized(later) == set()
        assert list(failed_steps(later)) == ["inference_records"]
        assert not [e for e in later.all_events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
        assert "failed its blocking check(s) held_out_accuracy" in failure_messages(later)
        weak_id = str(first.output_for_node("cifar_classifier")["model_id"].iloc[0])
        service = subprocess.run([str(Path(sys.executable).with_name("mlassets")), "stream", "infer", "--drain",
                                  "--model-id", weak_id, "--topic", topic],
                                 env={**os.environ, **test_env}, capture_output=True, text=True, timeout=300)
        assert service.returncode == 1 and "Traceback" not in service.stderr
        assert f"mlassets: model {weak_id} failed its blocking check(s) held_out_accuracy" in service.stderr

        record = first.output_for_node("cifar_classifier")
        store = resources["mongo"].model_store(IMAGE_DATABASE, CIFAR_MODEL_COLLECTION)
        assert stored_model_result(store, record).passed  # the intact version passes: the check can tell
        model_id = str(record["model_id"].iloc[0])
        store.collection.update_one({"_id": model_id}, {"$set": {"sha256": "0" * 64}})
        second = materialize(
            assets, resources=resources, instance=instance, raise_on_error=False,
            selection=AssetSelection.checks(cifar_classifier_intact) | AssetSelection.assets(inference_records),
            run_config={"ops": {"inference_records": {"config": {"topic": topic}}}},
        )
    assert checks(second) == {("cifar_classifier", INTEGRITY_CHECK): False}
    evaluation = second.get_asset_check_evaluations()[0]
    assert "does not match" in evaluation.metadata["error"].value
    assert list(failed_steps(second).values()) == ["DagsterAssetCheckFailedError"]
    assert materialized(second) == set() and "inference_records" not in started(second)
