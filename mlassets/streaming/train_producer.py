"""One producer's share of the `trainData` rows: the wire encoding and the send loops, runnable as its own process.

Kept to numpy, pyarrow's compute kernels and the Kafka clients so that a producer process starts in a fraction of
a second: `python -m mlassets.streaming.train_producer` reads {"config", "topic", "rows", "batch_rows"} as JSON on
stdin (config: the KafkaProducer keyword arguments of `KafkaResource.producer_config()`; rows: an .npz of labels,
float32 features and target partitions) and prints {"ranges": {partition: [start, end_exclusive]}} as its last stdout line; a failure
prints {"error": "<type>: <message>"} there instead (librdkafka's own log lines share stderr, so the last stderr line
need not be ours) and exits 1.

The rows go out through librdkafka (confluent-kafka), whose per-message cost is a fraction of kafka-python's (the
README's SUSY ingest figures); a setting librdkafka cannot express (the `AWS_MSK_IAM` SASL mechanism) sends them
through kafka-python instead, with the same wire format, idempotence and ranges.
"""

from __future__ import annotations

import json
import sys
import traceback
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from mlassets.streaming.librdkafka import KAFKA_PYTHON, LIBRDKAFKA, connected_producer, librdkafka_config, produce


def encode_rows(labels: np.ndarray, features: np.ndarray) -> list[tuple[bytes, bytes]]:
    """The (key, value) of each row: key `"1.0"`/`"0.0"`, value the float32 features as their shortest text that
    reads back as the same float32 (`2.608`, `1e-45`), comma-separated."""
    keys = [b"1.0" if int(label) == 1 else b"0.0" for label in labels]
    if len(keys) != len(features):
        raise ValueError(f"{len(keys)} labels for {len(features)} feature rows")
    if not keys:
        return []
    # Arrow's cast formats a whole column in C++ (shortest round trip, as numpy's repr): 0.15 us a value, where
    # `%.9g` through np.savetxt, a Python format per row, held the producer to about 200k rows/s.
    columns = np.asarray(features, dtype=np.float32).T
    text = pc.binary_join_element_wise(*(pc.cast(pa.array(column), pa.large_string()) for column in columns),
                                       pa.scalar(",", pa.large_string()))
    _, offsets, data = text.buffers()
    ends = np.frombuffer(offsets, np.int64, len(text) + 1, text.offset * 8).tolist()
    raw = data.to_pybytes()
    return [(key, raw[ends[i]:ends[i + 1]]) for i, key in enumerate(keys)]


def client_for(config: dict[str, Any]) -> str:
    """The client produce_rows sends through with these producer keywords: LIBRDKAFKA or KAFKA_PYTHON."""
    return KAFKA_PYTHON if librdkafka_config(config) is None else LIBRDKAFKA


def produce_rows(config: dict[str, Any], topic: str, labels: np.ndarray, features: np.ndarray, targets: np.ndarray,
                 batch_rows: int) -> tuple[dict[int, tuple[int, int]], str]:
    """Send row j to partition targets[j] with the client config allows; (ranges as send_rows gives them, client)."""
    producer = connected_producer(config, topic)
    if producer is None:
        python_producer = KafkaProducer(**config)
        try:
            return send_rows(python_producer, topic, labels, features, targets, batch_rows), client_for(config)
        finally:
            python_producer.close()
    return send_rows_librdkafka(producer, topic, labels, features, targets, batch_rows), client_for(config)


def send_rows_librdkafka(producer: Any, topic: str, labels: np.ndarray, features: np.ndarray, targets: np.ndarray,
                         batch_rows: int) -> dict[int, tuple[int, int]]:
    """send_rows through a confluent_kafka.Producer: the offsets come from its delivery reports."""
    ranges: dict[int, tuple[int, int]] = {}
    errors: list[Any] = []

    def delivered(error: Any, message: Any) -> None:
        if error is not None:
            errors.append(error)
            return
        _widen(ranges, message.partition(), message.offset())

    for first in range(0, len(labels), batch_rows):
        rows = encode_rows(labels[first:first + batch_rows], features[first:first + batch_rows])
        for (key, value), partition in zip(rows, targets[first:first + batch_rows].tolist()):
            produce(producer, topic, value, key, delivered, partition)
        producer.poll(0)
    unsent = producer.flush()
    if errors or unsent:
        raise RuntimeError(f"{len(errors) + unsent} of {len(labels)} sends to {topic} failed; first: "
                           f"{errors[0].str() if errors else 'not delivered before the flush ended'}")
    return ranges


def send_rows(producer: KafkaProducer, topic: str, labels: np.ndarray, features: np.ndarray, targets: np.ndarray,
              batch_rows: int) -> dict[int, tuple[int, int]]:
    """Send row j to partition targets[j]; per partition the lowest offset written and one past the highest.

    The acknowledgements of each chunk are read while the next one is sent: at most two chunks of futures are held
    and no callback runs per message. Every send is settled before the first failure is raised.
    """
    ranges: dict[int, tuple[int, int]] = {}
    errors: list[BaseException] = []

    def settle(futures: list[FutureRecordMetadata]) -> None:
        for future in futures:
            try:
                metadata = future.get()
            except Exception as exc:  # noqa: BLE001 - counted, the first one raised once all are settled
                errors.append(exc)
                continue
            _widen(ranges, metadata.partition, metadata.offset)

    previous: list[FutureRecordMetadata] = []
    send = producer.send
    for first in range(0, len(labels), batch_rows):
        rows = encode_rows(labels[first:first + batch_rows], features[first:first + batch_rows])
        current = [send(topic, key=key, value=value, partition=partition)
                   for (key, value), partition in zip(rows, targets[first:first + batch_rows].tolist())]
        settle(previous)
        previous = current
    producer.flush()
    settle(previous)
    if errors:
        raise RuntimeError(f"{len(errors)} of {len(labels)} sends to {topic} failed; first: {errors[0]!r}")
    return ranges


def _widen(ranges: dict[int, tuple[int, int]], partition: int, offset: int) -> None:
    """Make partition's [lowest offset, one past the highest) in ranges cover offset."""
    low, high = ranges.get(partition, (offset, offset + 1))
    ranges[partition] = (min(low, offset), max(high, offset + 1))


def main() -> None:
    try:
        job = json.loads(sys.stdin.read())
        with np.load(job["rows"]) as rows:
            labels, features, targets = rows["labels"], rows["features"], rows["targets"]
        ranges, _ = produce_rows(job["config"], job["topic"], labels, features, targets, job["batch_rows"])
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line, the traceback goes to stderr
        traceback.print_exc()
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        sys.exit(1)
    print(json.dumps({"ranges": {p: [low, high] for p, (low, high) in ranges.items()}}), flush=True)


if __name__ == "__main__":
    main()
