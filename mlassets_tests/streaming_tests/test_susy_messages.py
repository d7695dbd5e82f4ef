"""The trainData codec on real SUSY rows, its DLQ reasons, and the producer/reader against the real Kafka."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from kafka import TopicPartition

from mlassets.datasets.susy import FEATURES, find_susy, read_susy
from mlassets.names import dlq_topic
from mlassets.resources import KafkaResource
from mlassets.stack.process import proc_stat
from mlassets.streaming.dead_letters import BadMessage, DeadLetterError
from mlassets.streaming.librdkafka import librdkafka_config
from mlassets.streaming.susy_messages import (
    ProducerProcessError,
    RangeUnavailable,
    decode_train_message,
    encode_train_rows,
    ensure_topic,
    produce_train_rows,
    read_train_rows,
)
from mlassets.streaming.train_producer import produce_rows
from mlassets_tests.iot_helpers import committed_offset, create_topic, set_topic_config


@pytest.fixture(scope="module")
def sample(data_dir):
    frame = read_susy(find_susy(data_dir), nrows=200)
    return frame["label"].to_numpy(), frame[list(FEATURES)].to_numpy()


def test_rows_round_trip_exactly_in_the_original_wire_format(sample) -> None:
    labels, features = sample
    messages = encode_train_rows(labels, features)
    assert {key for key, _ in messages} == {b"1.0", b"0.0"}
    assert messages[0][1].count(b",") == 17
    decoded = [decode_train_message(k, v) for k, v in messages]
    assert [label for label, _ in decoded] == labels.tolist()
    np.testing.assert_array_equal(np.stack([row for _, row in decoded]), features)


@pytest.mark.parametrize(("key", "value", "reason"), [
    (b"1.0", b"1,2,3", "wrong field count: expected 18, got 3"),
    (b"0.0", b",".join([b"1"] * 17 + [b"abc"]), "non-numeric value: b'abc'"),
    (None, b",".join([b"1"] * 18), "missing key: expected the label text 1.0 or 0.0"),
    (b"signal", b",".join([b"1"] * 18), "invalid key: b'signal' is not the label text 1.0 or 0.0"),
    (b"2.0", b",".join([b"1"] * 18), "invalid key: b'2.0' is not the label text 1.0 or 0.0"),
    (b"1.0", b",".join([b"1"] * 17 + [b"nan"]), "non-finite value: NaN or infinity among the features as float32"),
    # finite as float64, infinite as float32: the poison pill of issue 14
    (b"1.0", b",".join([b"1e39"] + [b"1"] * 17), "non-finite value: NaN or infinity among the features as float32"),
    (b"0.0", b",".join([b"1"] * 17 + [b"-3.4028236e38"]),
     "non-finite value: NaN or infinity among the features as float32"),
    (b"\xff\xfe", b",".join([b"1"] * 18), "invalid key: b'\\xff\\xfe' is not the label text 1.0 or 0.0"),
    (b"1.0", b",".join([b"1"] * 17 + [b"\xff"]), "non-numeric value: b'\\xff'"),
    (b"1.0", None, "empty value: expected 18 comma-separated features"),
])
def test_bad_messages_have_a_reason(key, value, reason) -> None:
    with pytest.raises(BadMessage) as info:
        decode_train_message(key, value)
    assert info.value.reason == reason


def test_numeric_keys_other_than_the_label_text_still_decode() -> None:
    assert decode_train_message(b"1", b",".join([b"0.5"] * 18))[0] == 1


def test_each_feature_is_written_as_its_shortest_float32_text() -> None:
    values = [0.1, 2.608, 1e-45, 16777216.0, -0.0, 3.4028235e38, 1e-7, 123456789.0, 0.5, -2.5e-40] + [1.0] * 8
    features = np.asarray([values, values[::-1]], dtype=np.float32)
    (key, value), (other_key, reversed_value) = encode_train_rows(np.asarray([1, 0]), features)
    assert (key, other_key) == (b"1.0", b"0.0")
    assert value.split(b",")[:10] == [b"0.1", b"2.608", b"1e-45", b"16777216", b"-0", b"3.4028235e+38", b"1e-7",
                                      b"123456790", b"0.5", b"-2.5e-40"]
    assert reversed_value.split(b",") == value.split(b",")[::-1]
    for row, text in zip(features, (value, reversed_value)):
        np.testing.assert_array_equal(decode_train_message(b"1.0", text)[1], row)
        assert all(len(field) <= len(f"{float(x):.9g}") for field, x in zip(text.split(b","), row))
    with pytest.raises(ValueError, match="3 labels for 2 feature rows"):
        encode_train_rows(np.asarray([1, 0, 1]), features)


def test_the_largest_float32_is_a_value_not_a_dead_letter() -> None:
    _, row = decode_train_message(b"1.0", b",".join([b"3.4028235e38"] + [b"1"] * 17))
    assert row[0] == np.finfo(np.float32).max


def test_produce_and_read_exact_ranges_with_dead_letters(stack, sample, unique) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic = f"trainData-{unique}"
    assert ensure_topic(kafka, topic, 2) == 2
    labels, features = sample
    produced = produce_train_rows(kafka, topic, labels, features, partitions=2, batch_rows=64)
    assert produced.rows == 200 and sorted(produced.ranges) == [0, 1]
    assert produced.ranges[0] == (0, 100)
    # bad messages inside the range, then good rows after it that must not be read
    producer = kafka.producer()
    producer.send(topic, key=b"1.0", value=b"1,2,3", partition=0)
    producer.send(topic, key=None, value=b",".join([b"1"] * 18), partition=1)
    producer.send(topic, key=b"0.0", value=b",".join([b"x"] * 18), partition=1)
    producer.flush()
    for key, value in encode_train_rows(labels[:5], features[:5]):
        producer.send(topic, key=key, value=value, partition=0)
    producer.close()
    ranges = {0: (0, 101), 1: (0, 102)}
    rows = read_train_rows(kafka, topic, ranges, group=f"g-{unique}")
    assert len(rows.labels) == 200 and rows.dead_letters == 3
    assert rows.reasons == {"wrong field count": 1, "missing key": 1, "non-numeric value": 1}
    assert sorted(rows.labels.tolist()) == sorted(labels.tolist())
    consumer = kafka.consumer(None, dlq_topic(topic), consumer_timeout_ms=10_000)
    letters = [json.loads(r.value) for r in consumer]
    consumer.close()
    assert sorted(letter["reason"].split(":")[0] for letter in letters) == sorted(rows.reasons)
    assert {(letter["partition"], letter["offset"]) for letter in letters} == {(0, 100), (1, 100), (1, 101)}


def test_reading_a_range_that_was_never_written_fails_clearly(stack, unique) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic = f"trainData-{unique}"
    ensure_topic(kafka, topic, 1)
    with pytest.raises(RangeUnavailable, match=r"partition 0 \[0, 10\) requested, the broker keeps only \[0, 0\) "
                                                r"\(the range was never written\)"):
        read_train_rows(kafka, topic, {0: (0, 10)}, group=f"g-{unique}", idle_timeout_s=3)


def test_a_range_cut_short_by_retention_fails_clearly_instead_of_training_on_fewer_rows(stack, sample,
                                                                                         unique) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic, group = f"trainData-{unique}", f"g-{unique}"
    ensure_topic(kafka, topic, 1)
    labels, features = sample
    produce_train_rows(kafka, topic, labels[:50], features[:50], partitions=1)
    admin = kafka.admin()
    admin.delete_records({TopicPartition(topic, 0): 20})  # what retention does to the oldest segments
    admin.close()
    with pytest.raises(RangeUnavailable, match=r"partition 0 \[0, 50\) requested, the broker keeps only \[20, 50\) "
                                                r"\(the start was deleted by retention\); nothing was read"):
        read_train_rows(kafka, topic, {0: (0, 50)}, group=group)
    assert committed_offset(kafka, topic, group) is None
    rows = read_train_rows(kafka, topic, {0: (20, 50)}, group=group)
    assert rows.ranges == {0: (20, 50)} and len(rows.labels) == 30
    np.testing.assert_array_equal(rows.features, features[20:50])
    assert committed_offset(kafka, topic, group) == 50


def test_an_unacknowledged_dead_letter_leaves_the_range_uncommitted(stack, sample, unique) -> None:
    topic, group = f"trainData-{unique}", f"g-{unique}"
    kafka = create_topic(stack, topic, partitions=1, dlq_max_message_bytes=512)
    labels, features = sample
    produce_train_rows(kafka, topic, labels[:10], features[:10], partitions=1)
    producer = kafka.producer()
    producer.send(topic, key=b"1.0", value=b"x" * 2000, partition=0)  # its dead letter is over 512 bytes
    producer.close()
    with pytest.raises(DeadLetterError, match="not acknowledged"):
        read_train_rows(kafka, topic, {0: (0, 11)}, group=group)
    assert committed_offset(kafka, topic, group) is None
    set_topic_config(kafka, dlq_topic(topic), {"max.message.bytes": str(2**20)})
    rows = read_train_rows(kafka, topic, {0: (0, 11)}, group=group)
    assert len(rows.labels) == 10 and rows.reasons == {"wrong field count": 1} and rows.ranges == {0: (0, 11)}
    assert committed_offset(kafka, topic, group) == 11


@pytest.fixture(scope="module")
def rows_2000(data_dir):
    frame = read_susy(find_susy(data_dir), nrows=2000)
    return frame["label"].to_numpy(), frame[list(FEATURES)].to_numpy()


def _messages_by_partition(kafka: KafkaResource, topic: str) -> dict[int, list[tuple[bytes, bytes]]]:
    """Every message of the topic, per partition in offset order."""
    consumer = kafka.consumer(None)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    messages: dict[int, list[tuple[bytes, bytes]]] = {tp.partition: [] for tp in partitions}
    while any(consumer.position(tp) < ends[tp] for tp in partitions):
        for tp, records in consumer.poll(timeout_ms=5000).items():
            messages[tp.partition].extend((r.key, r.value) for r in records)
    consumer.close()
    return messages


def _sorted_rows(labels: np.ndarray, features: np.ndarray) -> np.ndarray:
    table = np.column_stack([labels, np.asarray(features, dtype=np.float32)])
    return table[np.lexsort(table.T[::-1])]


def test_several_producer_processes_write_every_row_once_in_exact_ranges(stack, rows_2000, unique) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic = f"trainData-{unique}"
    ensure_topic(kafka, topic, 4)
    labels, features = rows_2000
    # 3 processes over 4 partitions: process 0 owns partitions 0 and 3, the others one each
    produced = produce_train_rows(kafka, topic, labels, features, partitions=4, batch_rows=128, processes=3)
    assert produced.processes == 3 and produced.rows == 2000 and produced.client == "confluent-kafka"
    assert produced.ranges == {p: (0, 500) for p in range(4)}
    # byte for byte the original wire format, each partition in the order of its rows
    on_topic = _messages_by_partition(kafka, topic)
    for p in range(4):
        assert on_topic[p] == encode_train_rows(labels[p::4], features[p::4])
    rows = read_train_rows(kafka, topic, produced.ranges, group=f"g-{unique}")
    assert rows.dead_letters == 0 and rows.ranges == produced.ranges
    np.testing.assert_array_equal(_sorted_rows(rows.labels, rows.features), _sorted_rows(labels, features))


def test_the_ranges_start_where_the_partitions_ended(stack, rows_2000, unique) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic = f"trainData-{unique}"
    ensure_topic(kafka, topic, 2)
    labels, features = rows_2000
    produce_train_rows(kafka, topic, labels[:10], features[:10], partitions=2)
    produced = produce_train_rows(kafka, topic, labels[10:], features[10:], partitions=2, processes=2)
    assert produced.ranges == {0: (5, 1000), 1: (5, 1000)}
    rows = read_train_rows(kafka, topic, produced.ranges, group=f"g-{unique}")
    np.testing.assert_array_equal(_sorted_rows(rows.labels, rows.features),
                                  _sorted_rows(labels[10:], features[10:]))


def _kill_a_producer_process(parent: int, killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first train_producer child of parent that appears."""
    while not stop.is_set() and not killed:
        for entry in Path("/proc").iterdir():
            fields = proc_stat(entry.name) if entry.name.isdigit() else None
            try:
                if (fields is not None and int(fields[1]) == parent
                        and b"mlassets.streaming.train_producer" in (entry / "cmdline").read_bytes()):
                    # at once: on a fast machine a warm producer sends its 10,000 rows in well under a second
                    os.kill(int(entry.name), signal.SIGKILL)
                    killed.append(int(entry.name))
                    return
            except (OSError, IndexError, ValueError):
                continue
        time.sleep(0.05)


def test_a_producer_process_that_dies_fails_the_production_clearly(stack, rows_2000, unique) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic = f"trainData-{unique}"
    ensure_topic(kafka, topic, 2)
    labels, features = (np.tile(a, (10,) + (1,) * (a.ndim - 1)) for a in rows_2000)  # 20,000 rows
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_producer_process, args=(os.getpid(), killed, stop), daemon=True)
    killer.start()
    try:
        with pytest.raises(ProducerProcessError, match=r"1 of 2 producer processes for trainData-\w+ failed, so "
                                                       r"their rows may be missing and no ranges are recorded: "
                                                       r"process \d \(partitions \[\d\]\) killed by signal 9"):
            produce_train_rows(kafka, topic, labels, features, partitions=2, processes=2)
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1


class _QuicklyFailingKafka(KafkaResource):
    """Producers that give up bootstrapping after 2 s instead of 30."""

    def producer_config(self, **overrides):
        return super().producer_config(**{"bootstrap_timeout_ms": 2000, **overrides})


def test_a_producer_process_that_fails_names_its_error(stack, rows_2000, unique) -> None:
    kafka = _QuicklyFailingKafka(bootstrap_servers="127.0.0.1:1")  # nothing listens there
    labels, features = rows_2000
    with pytest.raises(ProducerProcessError, match=r"2 of 2 producer processes for trainData-\w+ failed.*"
                                                   r"process 0 \(partitions \[0\]\) exit 1: "
                                                   r"ConnectionError: cannot reach the Kafka brokers 127.0.0.1:1 "
                                                   r"within 2 s.*process 1 \(partitions \[1\]\) exit 1: "
                                                   r"ConnectionError: cannot reach the Kafka brokers"):
        produce_train_rows(kafka, f"trainData-{unique}", labels, features, partitions=2, processes=2)


def test_a_producer_process_reports_its_failure_as_its_last_stdout_line(tmp_path) -> None:
    # librdkafka logs to the same stderr from its own threads, so the parent reads the error from stdout
    job = {"config": {"bootstrap_servers": ["127.0.0.1:1"]}, "topic": "trainData-x",
           "rows": str(tmp_path / "absent.npz"), "batch_rows": 10}
    child = subprocess.run([sys.executable, "-m", "mlassets.streaming.train_producer"], input=json.dumps(job),
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 1
    error = json.loads(child.stdout.splitlines()[-1])["error"]
    assert error.startswith("FileNotFoundError: ") and "absent.npz" in error
    assert "Traceback" in child.stderr


def test_every_producer_setting_has_its_librdkafka_property() -> None:
    kafka = KafkaResource(bootstrap_servers="b1:9092, b2:9092", security_protocol="SASL_SSL", sasl_mechanism="PLAIN",
                          sasl_username="u", sasl_password="p", ssl_cafile="/ca.pem")
    properties = librdkafka_config(kafka.producer_config())
    assert properties == {
        "bootstrap.servers": "b1:9092,b2:9092", "security.protocol": "SASL_SSL", "client.id": "mlassets",
        "request.timeout.ms": 30_000, "sasl.mechanism": "PLAIN", "sasl.username": "u", "sasl.password": "p",
        "ssl.ca.location": "/ca.pem", "enable.idempotence": True, "acks": "all", "linger.ms": 20,
        "batch.size": 262_144, "compression.type": "none", "max.in.flight.requests.per.connection": 5,
        "retries": 2**31 - 1}
    # librdkafka has no AWS_MSK_IAM, and an unknown setting must not be dropped: both go through kafka-python
    iam = KafkaResource(bootstrap_servers="b1:9098", security_protocol="SASL_SSL", sasl_mechanism="AWS_MSK_IAM")
    assert librdkafka_config(iam.producer_config()) is None
    assert librdkafka_config(kafka.producer_config(max_block_ms=5000)) is None


def test_the_kafka_python_path_writes_the_same_messages_and_ranges(stack, rows_2000, unique) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic = f"trainData-{unique}"
    ensure_topic(kafka, topic, 2)
    labels, features = (a[:300] for a in rows_2000)
    targets = (np.arange(300) % 2).astype(np.int32)
    fast, fast_client = produce_rows(kafka.producer_config(), topic, labels, features, targets, 64)
    # a setting librdkafka cannot express sends through kafka-python
    slow, slow_client = produce_rows(kafka.producer_config(max_block_ms=60_000), topic, labels, features, targets, 64)
    assert (fast_client, slow_client) == ("confluent-kafka", "kafka-python")
    assert fast == {0: (0, 150), 1: (0, 150)} and slow == {0: (150, 300), 1: (150, 300)}
    on_topic = _messages_by_partition(kafka, topic)
    for p in range(2):
        assert on_topic[p] == 2 * encode_train_rows(labels[p::2], features[p::2])
