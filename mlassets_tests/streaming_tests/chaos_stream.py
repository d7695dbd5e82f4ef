"""The processes of the chaos test: a seeded producer of image messages and a trainData reader, both killable.

`python -m mlassets_tests.streaming_tests.chaos_stream produce ...` sends messages [start, count) of the seeded
stream (message i to partition i mod partitions); `... read ...` reads trainData ranges as the SUSY trainer does.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from mlassets.datasets.cifar10 import LABELS
from mlassets.resources import KafkaResource
from mlassets.streaming.image_messages import encode_image_message
from mlassets.streaming.susy_messages import read_train_rows
from mlassets_tests.streaming_tests.test_image_messages import POISON_PILLS

BAD_EVERY = 40  # one message in 40 is a poison pill, cycling through every kind


def good_id(seed: int, index: int) -> str:
    """The ID of good message `index` of the stream."""
    return f"chaos-{seed}-{index}"


def chaos_message(seed: int, index: int) -> tuple[bytes, bytes, str | None]:
    """Key, value and, for a poison pill, the reason its dead letter must start with, of message `index`."""
    if index % BAD_EVERY == BAD_EVERY - 1:
        value, reason = POISON_PILLS[(index // BAD_EVERY) % len(POISON_PILLS)]
        return f"bad-{index}".encode(), value, reason
    image = np.random.default_rng([seed, index]).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    key, value = encode_image_message(good_id(seed, index), f"producer-{index % 4}", index, LABELS[index % 10], image,
                                      time.time())
    return key, value, None


def produce(bootstrap: str, topic: str, seed: int, start: int, count: int, partitions: int, rate: float) -> None:
    """Send messages [start, count) through one idempotent producer at about `rate` messages/s (0: at once)."""
    producer = KafkaResource(bootstrap_servers=bootstrap).producer()
    errors: list[BaseException] = []
    began = time.monotonic()
    for index in range(start, count):
        key, value, _ = chaos_message(seed, index)
        producer.send(topic, key=key, value=value, partition=index % partitions).add_errback(errors.append)
        if rate > 0 and (ahead := began + (index - start + 1) / rate - time.monotonic()) > 0:
            time.sleep(ahead)
        if index % 1000 == 0:
            print(f"sent {index}", flush=True)
    producer.flush()
    producer.close()
    if errors:
        raise SystemExit(f"{len(errors)} sends failed; first: {errors[0]!r}")
    print("done", flush=True)


def read(bootstrap: str, topic: str, ranges: dict[int, tuple[int, int]], group: str) -> None:
    """Read the ranges as the SUSY trainer does and print what was read as one JSON line."""
    rows = read_train_rows(KafkaResource(bootstrap_servers=bootstrap), topic, ranges, group=group, batch_size=500)
    print(json.dumps({"rows": len(rows.labels), "ranges": rows.ranges, "reasons": rows.reasons,
                      "labels_sum": int(rows.labels.sum()),
                      "features_sum": float(rows.features.astype(np.float64).sum())}), flush=True)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["produce", "read"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--rate", type=float, default=0.0)
    parser.add_argument("--ranges", default="{}", help="JSON {partition: [start, end]}")
    parser.add_argument("--group", default="chaos")
    args = parser.parse_args(argv)
    if args.command == "produce":
        produce(args.bootstrap, args.topic, args.seed, args.start, args.count, args.partitions, args.rate)
    else:
        ranges = {int(p): (int(low), int(high)) for p, (low, high) in json.loads(args.ranges).items()}
        read(args.bootstrap, args.topic, ranges, args.group)


if __name__ == "__main__":
    main(sys.argv[1:])
