"""Simulated IoT producers publishing CIFAR-10 images to Kafka, batched, idempotent, rate-limited."""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mlassets.datasets.cifar10 import CifarImages
from mlassets.names import IMAGE_TOPIC
from mlassets.resources.kafka import KafkaResource
from mlassets.streaming.image_messages import encode_image_message
from mlassets.streaming.librdkafka import KAFKA_PYTHON, LIBRDKAFKA, connected_producer, produce

Send = Callable[[bytes, bytes], None]  # (key, value) of one message
Finish = Callable[[], list[str]]  # flush and close; the errors of the sends that failed


@dataclass(frozen=True)
class ProduceSummary:
    """What one producer run sent: run id, message count, elapsed seconds and the Kafka client that sent it."""

    run_id: str
    messages: int
    seconds: float
    client: str


def produce_images(kafka: KafkaResource, images: CifarImages, producers: int, images_per_producer: int,
                   rate: float = 0.0, topic: str = IMAGE_TOPIC, progress: bool = True) -> ProduceSummary:
    """Send images_per_producer images from each of `producers` ids; rate = images/s per producer (0: max).

    The messages go out through librdkafka (confluent-kafka) with the settings of `kafka.producer_config()`, keyed
    by producer id and partitioned by the key's murmur2 hash as kafka-python and the Java client do; a setting
    librdkafka cannot express (the `AWS_MSK_IAM` SASL mechanism) sends them through kafka-python instead.
    """
    run_id = uuid.uuid4().hex[:12]
    send, finish, client = sender(kafka, topic)
    total = producers * images_per_producer
    start = time.perf_counter()
    label_names = images.label_names  # a property that builds the whole array: once, not per message
    for n in range(total):
        seq, p = divmod(n, producers)
        producer_id = f"producer-{p + 1}"
        index = (seq * producers + p) % len(images)
        send(*encode_image_message(f"{run_id}-{producer_id}-{seq}", producer_id, seq, label_names[index],
                                   images.images[index], time.time()))
        if rate > 0:
            delay = start + (seq + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        if progress and (n + 1) % max(total // 50, 1) == 0:
            print(f"\rproduced {n + 1}/{total} ({(n + 1) / total:.0%})", end="", file=sys.stderr, flush=True)
    errors = finish()  # an exception above leaves without waiting for deliveries, as Ctrl-C should
    if progress:
        print(file=sys.stderr)
    if errors:
        raise RuntimeError(f"{len(errors)} of {total} sends failed; first: {errors[0]}")
    return ProduceSummary(run_id, total, time.perf_counter() - start, client)


def sender(kafka: KafkaResource, topic: str) -> tuple[Send, Finish, str]:
    """The send and finish functions of a producer for `topic` (librdkafka unless the settings need kafka-python),
    and the client's name."""
    producer = connected_producer(kafka.producer_config(), topic)
    if producer is None:
        return (*_kafka_python_sender(kafka, topic), KAFKA_PYTHON)
    errors: list[str] = []

    def delivered(error: Any, _message: Any) -> None:
        if error is not None:
            errors.append(error.str())

    def send(key: bytes, value: bytes) -> None:
        produce(producer, topic, value, key, delivered)
        producer.poll(0)

    def finish() -> list[str]:
        unsent = producer.flush()
        return errors + ["not delivered before the flush ended"] * unsent

    return send, finish, LIBRDKAFKA


def _kafka_python_sender(kafka: KafkaResource, topic: str) -> tuple[Send, Finish]:
    """send and finish through kafka-python, for settings librdkafka cannot express."""
    producer = kafka.producer()
    errors: list[BaseException] = []

    def send(key: bytes, value: bytes) -> None:
        producer.send(topic, key=key, value=value).add_errback(errors.append)

    def finish() -> list[str]:
        producer.flush()
        producer.close()
        return [repr(e) for e in errors]

    return send, finish
