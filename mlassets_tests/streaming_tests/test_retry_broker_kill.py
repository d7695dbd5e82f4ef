"""The retry policy against a real fault: the test broker is SIGKILLed while `inference_records` drains, kept down
longer than the drain's stall timeout, and started again. The step fails, Dagster retries it with backoff, and the
run succeeds with every message stored exactly once and the group's offsets at the end."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pandas as pd
from dagster import AssetKey, DagsterEventType, asset, instance_for_test, materialize

from mlassets.assets.iot.inference import inference_records
from mlassets.datasets.cifar10 import read_cifar10
from mlassets.resources import KafkaResource, MongoResource
from mlassets.stack import StackSettings
from mlassets.stack.kafka import KafkaServer
from mlassets.stack.process import port_open
from mlassets.streaming.image_producer import produce_images
from mlassets.streaming.offsets import group_lag
from mlassets_tests.iot_helpers import create_topic, small_model_id

PRODUCERS, IMAGES_PER_PRODUCER = 4, 1500
STALL_TIMEOUT_S = 4.0
BROKER_DOWN_S = 12.0  # longer than the stall timeout: the attempt running at the kill has to fail


def _kill_broker_when(stack: StackSettings, stored: Callable[[], int], at_least: int, log: dict) -> None:
    """SIGKILL the broker once `at_least` records are stored, keep it down BROKER_DOWN_S, start it again."""
    try:
        deadline = time.monotonic() + 300
        while stored() < at_least and time.monotonic() < deadline:
            time.sleep(0.05)
        broker = KafkaServer(stack)
        log["stored_at_kill"] = stored()
        os.killpg(broker.proc.pid(), signal.SIGKILL)
        log["killed_at"] = time.time()
        while port_open(stack.host, stack.kafka_port):
            time.sleep(0.1)
        time.sleep(BROKER_DOWN_S)
        broker.start()
        log["restarted_at"] = time.time()
    except BaseException as exc:  # noqa: BLE001 - asserted by the test
        log["error"] = exc


def test_a_drain_that_loses_its_broker_is_retried_and_stores_each_record_once(stack: StackSettings, data_dir,
                                                                                unique: str) -> None:
    topic, group, database = f"image_data_{unique}", f"g-{unique}", f"image_database_{unique}"
    kafka = create_topic(stack, topic)
    mongo = MongoResource(uri=stack.mongo_uri)
    sent = produce_images(kafka, read_cifar10(data_dir / "cifar10"), producers=PRODUCERS,
                          images_per_producer=IMAGES_PER_PRODUCER, topic=topic, progress=False)
    expected = {f"{sent.run_id}-producer-{p}-{s}" for p in range(1, PRODUCERS + 1) for s in range(IMAGES_PER_PRODUCER)}
    model_id = small_model_id(mongo)
    collection = mongo.client()[database]["inferences"]

    @asset(name="cifar_classifier")
    def stored_classifier() -> pd.DataFrame:
        """The model-store record inference_records reads (a small untrained model: the retry is under test)."""
        return pd.DataFrame({"model_id": [model_id]})

    log: dict = {}
    killer = threading.Thread(target=_kill_broker_when,
                              args=(stack, lambda: collection.count_documents({}), len(expected) // 5, log))
    killer.start()
    with instance_for_test() as instance:
        result = materialize(
            [stored_classifier, inference_records], instance=instance, raise_on_error=False,
            resources={"kafka": KafkaResource(bootstrap_servers=stack.kafka_bootstrap), "mongo": mongo},
            run_config={"ops": {"inference_records": {"config": {
                "topic": topic, "group": group, "database": database, "batch_size": 32,
                "stall_timeout_s": STALL_TIMEOUT_S}}}},
        )
    killer.join(120)
    assert "error" not in log, log
    events = result.all_events
    retries = [e for e in events if e.event_type == DagsterEventType.STEP_UP_FOR_RETRY]
    failures = [e.step_key for e in events if e.event_type == DagsterEventType.STEP_FAILURE]
    assert result.success, (failures, [e.message for e in events if e.is_failure])
    assert retries and all(e.step_key == "inference_records" for e in retries), log
    assert AssetKey("inference_records") in {e.asset_key for e in result.get_asset_materialization_events()}
    # Each message exactly once: the retried attempt re-read what was not committed and upserted it by id.
    ids = [doc["_id"] for doc in collection.find({}, {"_id": 1})]
    assert len(ids) == len(set(ids)) == len(expected) and set(ids) == expected
    assert 0 < log["stored_at_kill"] < len(expected)
    assert group_lag(kafka, topic, group, timeout_ms=10_000).total == 0
    print(f"broker killed at {log['stored_at_kill']}/{len(expected)} stored, down "
          f"{log['restarted_at'] - log['killed_at']:.1f} s; {len(retries)} retries; {len(ids)} records, no duplicate")
