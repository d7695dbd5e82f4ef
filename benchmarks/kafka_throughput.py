"""Produce and consume throughput of 1 KiB messages through the kafka resource vs Kafka's own perf tools."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid

from kafka.admin import NewTopic

from mlassets.resources import KafkaResource
from mlassets.stack import LocalStack
from mlassets.streaming.librdkafka import KAFKA_PYTHON, LIBRDKAFKA
from benchmarks.common import report

MESSAGES = int(os.environ.get("BENCH_KAFKA_MESSAGES", 200_000))
SIZE = 1024
PRODUCER_PROPS = ["acks=all", "enable.idempotence=true", "linger.ms=20", "batch.size=262144"]


def _topic(kafka: KafkaResource, name: str) -> str:
    admin = kafka.admin()
    admin.create_topics([NewTopic(name, num_partitions=4, replication_factor=1)])
    admin.close()
    return name


def resource_produce(kafka: KafkaResource, topic: str) -> float:
    payload = os.urandom(SIZE)
    producer = kafka.producer()
    start = time.perf_counter()
    for i in range(MESSAGES):
        producer.send(topic, key=str(i % 64).encode(), value=payload)
    producer.flush()
    elapsed = time.perf_counter() - start
    producer.close()
    return MESSAGES / elapsed


def librdkafka_produce(kafka: KafkaResource, topic: str) -> float:
    """The same sends through the image producers' sender (librdkafka, delivery reports served)."""
    from mlassets.streaming.image_producer import sender

    payload = os.urandom(SIZE)
    send, finish, client = sender(kafka, topic)
    assert client == LIBRDKAFKA, client
    start = time.perf_counter()
    for i in range(MESSAGES):
        send(str(i % 64).encode(), payload)
    failed = finish()
    elapsed = time.perf_counter() - start
    if failed:
        raise RuntimeError(f"{len(failed)} librdkafka sends failed; first: {failed[0]}")
    return MESSAGES / elapsed


def resource_consume(kafka: KafkaResource, topic: str) -> float:
    consumer = kafka.consumer(f"bench-{uuid.uuid4().hex[:8]}", topic, max_poll_records=5000,
                              fetch_max_bytes=64 * 2**20, max_partition_fetch_bytes=16 * 2**20)
    seen, start = 0, None
    while seen < MESSAGES:
        batch = consumer.poll(timeout_ms=10_000)
        if not batch:
            raise RuntimeError(f"consumer stalled after {seen} of {MESSAGES} messages")
        if start is None:
            start = time.perf_counter()
        seen += sum(len(records) for records in batch.values())
    elapsed = time.perf_counter() - start
    consumer.commit()
    consumer.close()
    return seen / elapsed


def java_produce(stack: LocalStack, topic: str) -> float:
    out = subprocess.run(
        [*stack.kafka._java("org.apache.kafka.tools.ProducerPerformance"), "--topic", topic,
         "--num-records", str(MESSAGES), "--record-size", str(SIZE), "--throughput", "-1",
         "--producer-props", f"bootstrap.servers={stack.settings.kafka_bootstrap}", *PRODUCER_PROPS],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(re.findall(r"([\d.]+) records/sec", out)[-1])


def java_consume(stack: LocalStack, topic: str) -> float:
    out = subprocess.run(
        [*stack.kafka._java("org.apache.kafka.tools.ConsumerPerformance"), "--bootstrap-server",
         stack.settings.kafka_bootstrap, "--topic", topic, "--messages", str(MESSAGES),
         "--timeout", "60000"],
        capture_output=True, text=True, check=True,
    ).stdout
    header, row = [l for l in out.splitlines() if "," in l][-2:]
    values = dict(zip([h.strip() for h in header.split(",")], [v.strip() for v in row.split(",")]))
    return float(values["nMsg.sec"])


def run(stack: LocalStack) -> None:
    """Run both directions, resource first then the Java tools, on fresh topics of the same broker."""
    kafka = KafkaResource(bootstrap_servers=stack.settings.kafka_bootstrap)
    suffix = uuid.uuid4().hex[:8]
    py_topic, java_topic = _topic(kafka, f"bench-py-{suffix}"), _topic(kafka, f"bench-java-{suffix}")
    produce = resource_produce(kafka, py_topic)
    produce_librdkafka = librdkafka_produce(kafka, _topic(kafka, f"bench-rd-{suffix}"))
    produce_ceiling = java_produce(stack, java_topic)
    consume = resource_consume(kafka, py_topic)
    consume_ceiling = java_consume(stack, java_topic)
    common = {"messages": MESSAGES, "message_bytes": SIZE, "partitions": 4, "producer": " ".join(PRODUCER_PROPS),
              "ceiling_tool": "org.apache.kafka.tools.ProducerPerformance / ConsumerPerformance 4.1.2"}
    report("kafka_produce_1KiB", produce, produce_ceiling, "messages/s", client=KAFKA_PYTHON, **common)
    report("kafka_produce_1KiB_librdkafka", produce_librdkafka, produce_ceiling, "messages/s",
           client=f"{LIBRDKAFKA} (the image and SUSY producers)", **common)
    report("kafka_consume_1KiB", consume, consume_ceiling, "messages/s",
           client=f"{KAFKA_PYTHON} (the SUSY reader; the image drain consumes through {LIBRDKAFKA})", **common)
