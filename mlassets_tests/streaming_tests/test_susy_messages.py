"""The trainData codec on real SUSY rows, its DLQ reasons, and the producer/reader against the real Kafka."""

import json

import numpy as np
import pytest

from mlassets.datasets.susy import FEATURES, find_susy, read_susy
from mlassets.resources import KafkaResource
from mlassets.streaming.image_messages import BadMessage
from mlassets.streaming.susy_messages import (
    decode_train_message,
    dlq_topic,
    encode_train_rows,
    ensure_topic,
    produce_train_rows,
    read_train_rows,
)


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
    (b"1.0", b",".join([b"1"] * 17 + [b"nan"]), "non-finite value: NaN or infinity among the features"),
    (b"1.0", None, "empty value: expected 18 comma-separated features"),
])
def test_bad_messages_have_a_reason(key, value, reason) -> None:
    with pytest.raises(BadMessage) as info:
        decode_train_message(key, value)
    assert info.value.reason == reason


def test_numeric_keys_other_than_the_label_text_still_decode() -> None:
    assert decode_train_message(b"1", b",".join([b"0.5"] * 18))[0] == 1


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
    with pytest.raises(RuntimeError, match="never written"):
        read_train_rows(kafka, topic, {0: (0, 10)}, group=f"g-{unique}", idle_timeout_s=3)
