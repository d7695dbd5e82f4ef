"""One producer's share of the `trainData` rows: the wire encoding and the send loop, runnable as its own process.

Kept to numpy and kafka-python so that a producer process starts in a fraction of a second: `python -m
mlassets.streaming.train_producer` reads {"config", "topic", "rows", "batch_rows"} as JSON on stdin (config: the
KafkaProducer keyword arguments; rows: an .npz of labels, float32 features and target partitions) and prints
{"ranges": {partition: [start, end_exclusive]}} as its last stdout line; any failure exits non-zero.
"""

from __future__ import annotations

import io
import json
import sys

import numpy as np
from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata


def encode_rows(labels: np.ndarray, features: np.ndarray) -> list[tuple[bytes, bytes]]:
    """The (key, value) of each row: key `"1.0"`/`"0.0"`, value the float32 features as `%.9g` text, comma-separated."""
    buffer = io.StringIO()
    np.savetxt(buffer, np.asarray(features, dtype=np.float32), fmt="%.9g", delimiter=",")
    values = buffer.getvalue().encode("ascii").splitlines()
    keys = [b"1.0" if int(label) == 1 else b"0.0" for label in labels]
    return list(zip(keys, values))


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
            low, high = ranges.get(metadata.partition, (metadata.offset, metadata.offset + 1))
            ranges[metadata.partition] = (min(low, metadata.offset), max(high, metadata.offset + 1))

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


def main() -> None:
    job = json.loads(sys.stdin.read())
    with np.load(job["rows"]) as rows:
        labels, features, targets = rows["labels"], rows["features"], rows["targets"]
    producer = KafkaProducer(**job["config"])
    try:
        ranges = send_rows(producer, job["topic"], labels, features, targets, job["batch_rows"])
    finally:
        producer.close()
    print(json.dumps({"ranges": {p: [low, high] for p, (low, high) in ranges.items()}}), flush=True)


if __name__ == "__main__":
    main()
