"""Reliability on the real stack: a SIGKILLed inference service, a broker restart under load, duplicates."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlassets.datasets.cifar10 import read_cifar10
from mlassets.names import CIFAR_MODEL_COLLECTION, IMAGE_DATABASE
from mlassets.resources import KafkaResource, MongoResource
from mlassets.stack import StackSettings
from mlassets.stack.kafka import KafkaServer
from mlassets.streaming.image_producer import produce_images
from mlassets.streaming.inference import drain_inference, model_classifier
from mlassets.streaming.offsets import group_lag
from mlassets_tests.iot_helpers import create_topic, small_model_id

REPO = Path(__file__).resolve().parents[2]
MLASSETS = str(Path(sys.executable).with_name("mlassets"))


def _expected_ids(run_id: str, producers: int, images: int) -> set[str]:
    return {f"{run_id}-producer-{p}-{s}" for p in range(1, producers + 1) for s in range(images)}


def _ids_once(collection) -> list[str]:
    ids = [d["_id"] for d in collection.find({}, {"_id": 1})]
    assert len(ids) == len(set(ids))
    return ids


def test_killed_service_then_rerun_stores_every_id_exactly_once(stack: StackSettings, test_env: dict[str, str],
                                                                data_dir, unique: str) -> None:
    topic, group, database = f"image_data_{unique}", f"g-{unique}", f"image_database_{unique}"
    kafka = create_topic(stack, topic)
    mongo = MongoResource(uri=stack.mongo_uri)
    sent = produce_images(kafka, read_cifar10(data_dir / "cifar10"), producers=4, images_per_producer=300,
                          topic=topic, progress=False)
    model_id = small_model_id(mongo)
    collection = mongo.client()[database]["inferences"]

    service = subprocess.Popen(
        [MLASSETS, "stream", "infer", "--model-id", model_id, "--topic", topic, "--group", group,
         "--database", database, "--batch-size", "20"],
        env={**os.environ, **test_env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while collection.count_documents({}) < 100:
            assert service.poll() is None, service.stdout.read()
            assert time.monotonic() < deadline, "the service stored nothing in 180 s"
            time.sleep(0.05)
    finally:
        service.send_signal(signal.SIGKILL)
        service.wait(30)
    stored_before = collection.count_documents({})
    assert 100 <= stored_before < 1200, "the kill came after the whole topic was done; nothing was tested"

    rerun = drain_inference(kafka, collection, model_classifier(mongo.model_store(IMAGE_DATABASE, CIFAR_MODEL_COLLECTION)
                                                                .load(model_id).model),
                            model_id, topic=topic, group=group, batch_size=64)
    ids = _ids_once(collection)
    assert set(ids) == _expected_ids(sent.run_id, 4, 300)
    # what the killed service wrote without committing is classified again (at least once), never lost
    assert rerun.stored >= 1200 - stored_before


def test_broker_restart_while_producers_run_loses_nothing(stack: StackSettings, test_env: dict[str, str],
                                                           unique: str) -> None:
    topic, group = f"image_data_{unique}", f"g-{unique}"
    kafka = create_topic(stack, topic)
    producers = subprocess.Popen(
        [MLASSETS, "stream", "produce", "--producers", "2", "--images", "150", "--rate", "25", "--topic", topic],
        env={**os.environ, **test_env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    broker = KafkaServer(stack)
    try:
        deadline = time.monotonic() + 120
        while sum(group_lag(kafka, topic, group).end.values()) < 20:  # the producers are sending
            assert producers.poll() is None, producers.stdout.read()
            assert time.monotonic() < deadline, "the producers sent nothing in 120 s"
            time.sleep(0.2)
        assert producers.poll() is None, "the producers finished before the broker stopped"
        assert broker.proc.stop()
        time.sleep(3)
        broker.start()
        output, _ = producers.communicate(timeout=240)
    finally:
        if broker.proc.pid() is None:
            broker.start()
        if producers.poll() is None:
            producers.kill()
    assert producers.returncode == 0, output[-3000:]
    run_id = output.strip().splitlines()[-1].split()[1].rstrip(":")

    collection = MongoResource(uri=stack.mongo_uri).client()[f"image_database_{unique}"]["inferences"]
    summary = drain_inference(KafkaResource(bootstrap_servers=stack.kafka_bootstrap), collection,
                              lambda images: ([0] * len(images), [1.0] * len(images)), "test:v1", topic=topic,
                              group=group)
    assert summary.dead_letters == 0
    assert set(_ids_once(collection)) == _expected_ids(run_id, 2, 150)
