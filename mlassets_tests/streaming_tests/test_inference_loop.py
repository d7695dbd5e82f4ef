"""The inference drain against the real broker and FerretDB: upserts, DLQ records, commits, duplicates."""

import json

import numpy as np
import pytest
from kafka import TopicPartition
from kafka.admin import NewTopic

from mlassets.datasets.cifar10 import LABELS, read_cifar10
from mlassets.resources import KafkaResource, MongoResource
from mlassets.stack import StackSettings
from mlassets.streaming.image_producer import produce_images
from mlassets.streaming.inference import drain_inference


def brightness_classifier(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic stand-in for the CNN: class = mean brightness bucket (tests the loop, not the model)."""
    mean = images.reshape(len(images), -1).mean(axis=1)
    return (mean // 25.6).astype(int).clip(0, 9), np.full(len(images), 0.5)


def test_drain_stores_each_id_once_and_dead_letters_bad_messages(stack: StackSettings, data_dir, unique: str) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic, group = f"image_data_{unique}", f"g-{unique}"
    admin = kafka.admin()
    admin.create_topics([NewTopic(topic, 2, 1), NewTopic(f"{topic}.dlq", 1, 1)])
    admin.close()
    images = read_cifar10(data_dir / "cifar10")
    sent = produce_images(kafka, images, producers=3, images_per_producer=20, topic=topic, progress=False)
    producer = kafka.producer()
    producer.send(topic, key=b"producer-1", value=b"{broken json")
    producer.send(topic, key=b"producer-2", value=json.dumps({"ID": "x", "producer_id": "producer-2"}).encode())
    producer.flush()
    producer.close()

    collection = MongoResource(uri=stack.mongo_uri).client()[f"image_database_{unique}"]["inferences"]
    summary = drain_inference(kafka, collection, brightness_classifier, "test:v1", topic=topic, group=group,
                              batch_size=16)
    assert summary.stored == 60 and summary.dead_letters == 2
    assert summary.reasons == {"invalid JSON": 1, "missing field(s)": 1}
    docs = list(collection.find({}))
    assert len(docs) == 60 and len({d["_id"] for d in docs}) == 60
    assert {d["producer_id"] for d in docs} == {"producer-1", "producer-2", "producer-3"}
    assert all(d["_id"].startswith(sent.run_id) and d["InferredValue"] in LABELS for d in docs)
    assert all(d["model_version"] == "test:v1" and d["inferred_at"] is not None for d in docs)

    dlq = kafka.consumer(None, f"{topic}.dlq", consumer_timeout_ms=5000)
    reasons = sorted(json.loads(r.value)["reason"].split(":")[0] for r in dlq)
    dlq.close()
    assert reasons == ["invalid JSON", "missing field(s)"]

    # offsets were committed: a second drain finds nothing new
    again = drain_inference(kafka, collection, brightness_classifier, "test:v1", topic=topic, group=group,
                            stall_timeout_s=30)
    assert again.stored == 0 and again.dead_letters == 0

    # a replayed copy of the same messages (new group) upserts into the same documents
    replay = drain_inference(kafka, collection, brightness_classifier, "test:v2", topic=topic, group=f"{group}-2")
    assert replay.stored == 60
    assert collection.count_documents({}) == 60
    assert collection.count_documents({"model_version": "test:v2"}) == 60


def test_a_failed_write_commits_only_the_batches_written_before_it(stack: StackSettings, data_dir,
                                                                    unique: str) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic, group = f"image_data_{unique}", f"g-{unique}"
    admin = kafka.admin()
    admin.create_topics([NewTopic(topic, 1, 1), NewTopic(f"{topic}.dlq", 1, 1)])
    admin.close()
    produce_images(kafka, read_cifar10(data_dir / "cifar10"), producers=2, images_per_producer=30, topic=topic,
                   progress=False)
    calls = [0]

    def fails_on_third_batch(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls[0] += 1
        if calls[0] == 3:
            raise RuntimeError("the model server went away")
        return brightness_classifier(images)

    collection = MongoResource(uri=stack.mongo_uri).client()[f"image_database_{unique}"]["inferences"]
    with pytest.raises(RuntimeError, match="went away"):
        drain_inference(kafka, collection, fails_on_third_batch, "test:v1", topic=topic, group=group, batch_size=16)
    # the next batch was already fetched while the third was classified, but only the written two are committed
    probe = kafka.consumer(group)
    committed = probe.committed(TopicPartition(topic, 0))
    probe.close()
    assert committed == 32 and collection.count_documents({}) == 32

    rerun = drain_inference(kafka, collection, brightness_classifier, "test:v1", topic=topic, group=group,
                            batch_size=16)
    assert rerun.stored == 28 and collection.count_documents({}) == 60
