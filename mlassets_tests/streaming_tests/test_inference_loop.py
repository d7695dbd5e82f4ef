"""The inference drain against the real broker and FerretDB: upserts, DLQ records, commits, duplicates."""

import datetime as dt
import json
import threading
from concurrent.futures import Future
from types import SimpleNamespace

import numpy as np
import pytest
from confluent_kafka import KafkaError, KafkaException
from kafka import TopicPartition
from kafka.admin import NewTopic
from kafka.errors import CommitFailedError, GroupAuthorizationFailedError, RebalanceInProgressError
from pymongo import MongoClient, WriteConcern
from pymongo.errors import BulkWriteError

from mlassets.datasets.cifar10 import LABELS, read_cifar10
from mlassets.resources import KafkaResource, MongoResource
from mlassets.stack import StackSettings
from mlassets.streaming.dead_letters import DeadLetterError
from mlassets.streaming.drain_consumer import (CommitNotTaken, KafkaPythonDrainConsumer, LibrdkafkaDrainConsumer,
                                              drain_consumer)
from mlassets.streaming.image_producer import produce_images
from mlassets.streaming.image_messages import ImageMessage
from mlassets.streaming.inference import (DrainSummary, _Batch, _commit_written, _Stages, drain_inference,
                                         duplicate_indexes)
from mlassets.streaming.librdkafka import KAFKA_PYTHON, LIBRDKAFKA
from mlassets.tables.tallies import record_tallies
from mlassets_tests.iot_helpers import committed_offset, create_topic, dead_letters, set_topic_config
from mlassets_tests.streaming_tests.test_image_messages import POISON_PILLS


def brightness_classifier(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic stand-in for the CNN: class = mean brightness bucket (tests the loop, not the model)."""
    mean = images.reshape(len(images), -1).mean(axis=1)
    return (mean // 25.6).astype(int).clip(0, 9), np.full(len(images), 0.5)


@pytest.mark.parametrize("client", [LIBRDKAFKA, KAFKA_PYTHON])
def test_drain_stores_each_id_once_and_dead_letters_bad_messages(stack: StackSettings, data_dir, unique: str,
                                                                 client: str) -> None:
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
                              batch_size=16, client=client)
    assert summary.stored == 60 and summary.dead_letters == 2 and summary.client == client
    assert summary.reasons == {"invalid JSON": 1, "missing field(s)": 1}
    docs = list(collection.find({}))
    assert len(docs) == 60 and len({d["_id"] for d in docs}) == 60
    assert {d["producer_id"] for d in docs} == {"producer-1", "producer-2", "producer-3"}
    assert all(d["_id"].startswith(sent.run_id) and d["InferredValue"] in LABELS for d in docs)
    assert all(d["model_version"] == "test:v1" and d["inferred_at"] is not None for d in docs)
    # the tallies the day tables are counted by (pymongo reads the UTC instants back naive)
    assert all(d | record_tallies(d["inferred_at"].replace(tzinfo=dt.timezone.utc), d["producer_id"],
                                  d["GroundTruth"], d["InferredValue"]) == d for d in docs)

    dlq = kafka.consumer(None, f"{topic}.dlq", consumer_timeout_ms=5000)
    reasons = sorted(json.loads(r.value)["reason"].split(":")[0] for r in dlq)
    dlq.close()
    assert reasons == ["invalid JSON", "missing field(s)"]

    # offsets were committed: a second drain finds nothing new
    again = drain_inference(kafka, collection, brightness_classifier, "test:v1", topic=topic, group=group,
                            stall_timeout_s=30, client=client)
    assert again.stored == 0 and again.dead_letters == 0

    # a replayed copy of the same messages (new group) upserts into the same documents
    replay = drain_inference(kafka, collection, brightness_classifier, "test:v2", topic=topic, group=f"{group}-2",
                             client=client)
    assert replay.stored == 60
    assert collection.count_documents({}) == 60
    assert collection.count_documents({"model_version": "test:v2"}) == 60


@pytest.mark.parametrize("client", [LIBRDKAFKA, KAFKA_PYTHON])
def test_a_failed_write_commits_only_the_batches_written_before_it(stack: StackSettings, data_dir,
                                                                    unique: str, client: str) -> None:
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
        drain_inference(kafka, collection, fails_on_third_batch, "test:v1", topic=topic, group=group, batch_size=16,
                        client=client)
    # the next batch was already fetched while the third was classified, but only the written two are committed
    probe = kafka.consumer(group)
    committed = probe.committed(TopicPartition(topic, 0))
    probe.close()
    assert committed == 32 and collection.count_documents({}) == 32

    rerun = drain_inference(kafka, collection, brightness_classifier, "test:v1", topic=topic, group=group,
                            batch_size=16, client=client)
    assert rerun.stored == 28 and collection.count_documents({}) == 60


def test_poison_pills_are_dead_letters_and_the_good_messages_around_them_are_stored(stack: StackSettings, data_dir,
                                                                                    unique: str) -> None:
    topic, group = f"image_data_{unique}", f"g-{unique}"
    kafka = create_topic(stack, topic, partitions=1)
    images = read_cifar10(data_dir / "cifar10")
    first = produce_images(kafka, images, producers=2, images_per_producer=10, topic=topic, progress=False)
    producer = kafka.producer()
    for value, _ in POISON_PILLS:
        producer.send(topic, key=b"hostile", value=value)
    producer.flush()
    producer.close()
    second = produce_images(kafka, images, producers=2, images_per_producer=10, topic=topic, progress=False)

    collection = MongoResource(uri=stack.mongo_uri).client()[f"image_database_{unique}"]["inferences"]
    # batches of 16 mix pills with good messages: one pill must not fail its batch
    summary = drain_inference(kafka, collection, brightness_classifier, "test:v1", topic=topic, group=group,
                              batch_size=16)
    assert summary.stored == 40 and summary.dead_letters == len(POISON_PILLS)
    assert {d["_id"] for d in collection.find({}, {"_id": 1})} == {
        f"{run}-producer-{p}-{s}" for run in (first.run_id, second.run_id) for p in (1, 2) for s in range(10)}
    letters = sorted(dead_letters(kafka, topic), key=lambda letter: letter["offset"])
    assert [letter["offset"] for letter in letters] == list(range(20, 20 + len(POISON_PILLS)))
    for letter, (_, reason) in zip(letters, POISON_PILLS):
        assert letter["reason"].startswith(reason), (letter["reason"], reason)
    assert committed_offset(kafka, topic, group) == 40 + len(POISON_PILLS)


def test_an_unacknowledged_dead_letter_leaves_its_batch_uncommitted(stack: StackSettings, data_dir,
                                                                    unique: str) -> None:
    topic, group = f"image_data_{unique}", f"g-{unique}"
    # the dead-letter topic refuses records over 512 bytes; the letter of this message is larger
    kafka = create_topic(stack, topic, partitions=1, dlq_max_message_bytes=512)
    images = read_cifar10(data_dir / "cifar10")
    produce_images(kafka, images, producers=1, images_per_producer=16, topic=topic, progress=False)
    producer = kafka.producer()
    producer.send(topic, key=b"producer-9", value=b"{broken json" + b" " * 2000)
    producer.flush()
    producer.close()
    produce_images(kafka, images, producers=1, images_per_producer=16, topic=topic, progress=False)

    collection = MongoResource(uri=stack.mongo_uri).client()[f"image_database_{unique}"]["inferences"]
    with pytest.raises(DeadLetterError, match="not acknowledged .*MessageSizeTooLarge"):
        drain_inference(kafka, collection, brightness_classifier, "test:v1", topic=topic, group=group,
                        batch_size=16)
    assert (committed_offset(kafka, topic, group) or 0) <= 16  # at most the batches before the one with the lost letter
    assert dead_letters(kafka, topic) == []

    set_topic_config(kafka, f"{topic}.dlq", {"max.message.bytes": str(2**20)})
    rerun = drain_inference(kafka, collection, brightness_classifier, "test:v1", topic=topic, group=group,
                            batch_size=16)
    assert rerun.dead_letters == 1 and collection.count_documents({}) == 32
    assert [(letter["offset"], letter["reason"].split(":")[0]) for letter in dead_letters(kafka, topic)] == [
        (16, "invalid JSON")]
    assert committed_offset(kafka, topic, group) == 33


def test_only_duplicate_ids_are_taken_for_replays_and_write_concern_errors_raise() -> None:
    duplicate = {"index": 1, "code": 11000, "errmsg": "E11000 duplicate key error"}
    assert duplicate_indexes(BulkWriteError({"writeErrors": [duplicate], "writeConcernErrors": []})) == [1]
    not_durable = BulkWriteError({"writeErrors": [duplicate],
                                  "writeConcernErrors": [{"code": 64, "errmsg": "waiting for replication timed out"}]})
    with pytest.raises(BulkWriteError) as err:
        duplicate_indexes(not_durable)
    assert err.value is not_durable
    with pytest.raises(BulkWriteError):
        duplicate_indexes(BulkWriteError({"writeErrors": [duplicate, {"index": 2, "code": 2, "errmsg": "bad value"}]}))


def test_a_collection_without_acknowledged_writes_is_refused() -> None:
    client = MongoClient("mongodb://127.0.0.1:1/", connect=False)
    collection = client["db"].get_collection("inferences", write_concern=WriteConcern(w=0))
    with pytest.raises(ValueError, match="unacknowledged write concern"):
        drain_inference(KafkaResource(bootstrap_servers="127.0.0.1:1"), collection, brightness_classifier, "test:v1")
    client.close()


def test_the_drain_consumes_through_librdkafka_unless_the_settings_need_kafka_python() -> None:
    with pytest.raises(ValueError, match="unknown Kafka client 'java'"):
        drain_consumer(KafkaResource(bootstrap_servers="127.0.0.1:1"), "g", "t", 16, client="java")
    msk = KafkaResource(bootstrap_servers="127.0.0.1:1", security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM")
    with pytest.raises(ValueError, match="AWS_MSK_IAM: librdkafka cannot consume"):
        drain_consumer(msk, "g", "t", 16, client=LIBRDKAFKA)
    # nothing listens on port 1: either client says so within the request timeout
    for kafka in (KafkaResource(bootstrap_servers="127.0.0.1:1", request_timeout_ms=2000),
                  msk.model_copy(update={"request_timeout_ms": 2000})):
        with pytest.raises(ConnectionError, match=r"cannot reach the Kafka brokers 127.0.0.1:1 within 2 s"):
            drain_consumer(kafka, "g", "t", 16)


class _Inserts:
    """A collection stand-in for the stages' unit test: records each insert_many, runs a hook first."""

    def __init__(self, hook) -> None:
        self.attempts = 0
        self.inserted: list[list[str]] = []
        self.hook = hook

    def insert_many(self, docs: list[dict], ordered: bool) -> None:
        self.attempts += 1
        self.hook(self.attempts - 1)
        self.inserted.append([d["_id"] for d in docs])


def _good(ids: range) -> list:
    record = SimpleNamespace(partition=0, offset=0)
    return [(record, ImageMessage(id=f"id-{i}", producer_id="p", seq=i, ground_truth="cat", sent_at=0.0,
                                  image=np.full((32, 32, 3), i, np.uint8))) for i in ids]


def test_the_next_batch_is_classified_while_one_is_written_and_nothing_is_written_after_a_failure() -> None:
    classifying_second = threading.Event()
    classified: list[int] = []

    def classify(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        classified.append(int(images[0, 0, 0, 0]))
        if len(classified) == 2:
            classifying_second.set()
        return brightness_classifier(images)

    def hook(call: int) -> None:
        if call == 0:  # the first write waits until the second batch is being classified: the stages overlap
            assert classifying_second.wait(timeout=10), "batch 2 was not classified while batch 1 was written"
        if call == 1:
            raise OSError("the server went away mid-write")

    collection = _Inserts(hook)
    stages = _Stages(collection, classify, "test:v1")
    try:
        futures = [stages.submit(_good(range(10 * k, 10 * k + 10))) for k in range(4)]
        assert futures[0].result(timeout=30) == 10
        with pytest.raises(OSError, match="went away"):
            futures[1].result(timeout=30)
        for later in futures[2:]:
            with pytest.raises(RuntimeError, match="not run: an earlier batch"):
                later.result(timeout=30)
    finally:
        stages.shutdown()
    assert collection.attempts == 2 and collection.inserted == [[f"id-{i}" for i in range(10)]]
    assert classified[:2] == [0, 10]


class _Commits:
    """A consumer stand-in for the commit unit test: records each commit, raising the next of `errors` first."""

    def __init__(self, errors: list[BaseException | None]) -> None:
        self.errors, self.committed = errors, []

    def commit(self, offsets: dict[int, int]) -> None:
        error = self.errors.pop(0) if self.errors else None
        if error is not None:
            raise error
        self.committed.append(offsets)


def _written_batch(first: int, stored: int) -> _Batch:
    done: Future = Future()
    done.set_result(stored)
    return _Batch([], {0: first + stored}, [], done)


def test_a_commit_the_group_cannot_take_leaves_the_drain_running_and_other_commit_errors_raise(caplog) -> None:
    letters = SimpleNamespace(confirm=lambda sent: None)
    consumer = _Commits([None, CommitNotTaken("image_data: commit of {0: 20} not taken: ILLEGAL_GENERATION"), None])
    summary = DrainSummary()
    for first in (0, 10, 20):
        _commit_written(_written_batch(first, 10), consumer, letters, summary)
    assert consumer.committed == [{0: 10}, {0: 30}] and summary.stored == 30 and summary.commits_not_taken == 1
    assert "ILLEGAL_GENERATION; the drain goes on (a later commit covers the batch, or it is read again)" in caplog.text
    consumer = _Commits([RuntimeError("the broker refused the commit: authorization failed")])
    with pytest.raises(RuntimeError, match="authorization failed"):
        _commit_written(_written_batch(0, 10), consumer, letters, DrainSummary())


def _refusing(error: BaseException) -> SimpleNamespace:
    """A client consumer stand-in whose commit raises error."""
    def commit(*args, **kwargs) -> None:
        raise error
    return SimpleNamespace(commit=commit)


@pytest.mark.parametrize(("consumer_class", "passing", "other"), [
    (LibrdkafkaDrainConsumer, [KafkaException(KafkaError(code)) for code in (
        KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError._WAIT_COORD,
        KafkaError.NOT_COORDINATOR)],
     KafkaException(KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))),
    (KafkaPythonDrainConsumer, [CommitFailedError("the consumer was kicked out of the group"),
                                RebalanceInProgressError("rebalancing")],
     GroupAuthorizationFailedError("g")),
])
def test_each_client_calls_a_commit_the_group_cannot_take_now_not_taken(consumer_class, passing, other) -> None:
    consumer = object.__new__(consumer_class)
    consumer.topic = "image_data"
    for error in passing:
        consumer._consumer = _refusing(error)
        with pytest.raises(CommitNotTaken, match=r"image_data: commit of \{0: 10\} not taken"):
            consumer.commit({0: 10})
    consumer._consumer = _refusing(other)
    with pytest.raises(type(other)):
        consumer.commit({0: 10})
