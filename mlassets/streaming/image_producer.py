"""Simulated IoT producers publishing CIFAR-10 images to Kafka, batched, idempotent, rate-limited."""

from __future__ import annotations

import sys
import time
import uuid
from dataclasses import dataclass

from mlassets.datasets.cifar10 import CifarImages
from mlassets.names import IMAGE_TOPIC
from mlassets.resources.kafka import KafkaResource
from mlassets.streaming.image_messages import encode_image_message


@dataclass(frozen=True)
class ProduceSummary:
    """What one producer run sent: run id, message count and elapsed seconds."""

    run_id: str
    messages: int
    seconds: float


def produce_images(kafka: KafkaResource, images: CifarImages, producers: int, images_per_producer: int,
                   rate: float = 0.0, topic: str = IMAGE_TOPIC, progress: bool = True) -> ProduceSummary:
    """Send images_per_producer images from each of `producers` ids; rate = images/s per producer (0: max)."""
    run_id = uuid.uuid4().hex[:12]
    producer = kafka.producer()
    total = producers * images_per_producer
    start = time.perf_counter()
    errors: list[BaseException] = []
    label_names = images.label_names  # a property that builds the whole array: once, not per message
    for n in range(total):
        seq, p = divmod(n, producers)
        producer_id = f"producer-{p + 1}"
        index = (seq * producers + p) % len(images)
        key, value = encode_image_message(
            f"{run_id}-{producer_id}-{seq}", producer_id, seq, label_names[index], images.images[index],
            time.time(),
        )
        producer.send(topic, key=key, value=value).add_errback(errors.append)
        if rate > 0:
            delay = start + (seq + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        if progress and (n + 1) % max(total // 50, 1) == 0:
            print(f"\rproduced {n + 1}/{total} ({(n + 1) / total:.0%})", end="", file=sys.stderr, flush=True)
    producer.flush()
    producer.close()
    if progress:
        print(file=sys.stderr)
    if errors:
        raise RuntimeError(f"{len(errors)} of {total} sends failed; first: {errors[0]!r}")
    return ProduceSummary(run_id, total, time.perf_counter() - start)
