"""librdkafka (confluent-kafka) clients built from the kafka-python keywords of `KafkaResource`'s configs.

Kept to the Kafka clients so that a producer process that imports it starts in a fraction of a second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# kafka-python keyword -> librdkafka property, for every key KafkaResource.producer_config() can give
LIBRDKAFKA_KEYS = {
    "security_protocol": "security.protocol", "client_id": "client.id", "sasl_mechanism": "sasl.mechanism",
    "sasl_plain_username": "sasl.username", "sasl_plain_password": "sasl.password", "ssl_cafile": "ssl.ca.location",
    "enable_idempotence": "enable.idempotence", "acks": "acks", "linger_ms": "linger.ms", "batch_size": "batch.size",
    "compression_type": "compression.type", "max_in_flight_requests_per_connection":
    "max.in.flight.requests.per.connection", "retries": "retries", "request_timeout_ms": "request.timeout.ms",
}
LIBRDKAFKA_SASL = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
# the names of the two Kafka clients, as summaries, metadata and benchmarks report them
LIBRDKAFKA, KAFKA_PYTHON = "confluent-kafka", "kafka-python"
DEFAULT_BOOTSTRAP_TIMEOUT_MS = 30_000
# kafka-python's and the Java client's partitioner of keyed messages (librdkafka's default is a CRC32 hash), so a key
# lands on the same partition whichever client sends it
KEYED_PARTITIONER = "murmur2_random"


def librdkafka_config(config: dict[str, Any]) -> dict[str, Any] | None:
    """The librdkafka properties of kafka-python client keywords; None when one of them has no equivalent."""
    if config.get("sasl_mechanism") and config["sasl_mechanism"] not in LIBRDKAFKA_SASL:
        return None
    properties: dict[str, Any] = {"bootstrap.servers": ",".join(config["bootstrap_servers"])}
    for key, value in config.items():
        if key in ("bootstrap_servers", "bootstrap_timeout_ms") or value is None:
            continue
        if key not in LIBRDKAFKA_KEYS:
            return None
        properties[LIBRDKAFKA_KEYS[key]] = value
    properties.setdefault("compression.type", "none")
    return properties


def connected_producer(config: dict[str, Any], topic: str) -> Any | None:
    """A confluent_kafka.Producer with the librdkafka properties of `config` (kafka-python keywords, partitioning keys
    as kafka-python does) that has reached the brokers and seen `topic`; None when a setting has no librdkafka
    equivalent. ConnectionError when no broker answers within config's bootstrap_timeout_ms (default 30 s)."""
    properties = librdkafka_config(config)
    if properties is None:
        return None
    from confluent_kafka import Producer

    producer = Producer({**properties, "partitioner": KEYED_PARTITIONER})
    # fail now, not after message.timeout.ms of retries
    topic_metadata(producer, properties, topic, config.get("bootstrap_timeout_ms", DEFAULT_BOOTSTRAP_TIMEOUT_MS) / 1000)
    return producer


def topic_metadata(client: Any, properties: dict[str, Any], topic: str, seconds: float) -> Any:
    """The metadata of `topic` as a librdkafka client (built from `properties`) sees it; ConnectionError when no
    broker answers within `seconds`."""
    from confluent_kafka import KafkaException

    try:
        return client.list_topics(topic, timeout=seconds).topics.get(topic)
    except KafkaException as exc:
        raise unreachable_brokers(properties["bootstrap.servers"], seconds, exc.args[0].str()) from None


def unreachable_brokers(servers: str, seconds: float, detail: str) -> ConnectionError:
    """The error of a client that reached none of `servers` within `seconds`."""
    return ConnectionError(f"cannot reach the Kafka brokers {servers} within {seconds:g} s: {detail}")


def produce(producer: Any, topic: str, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None],
            partition: int = -1) -> None:
    """`producer.produce` one message (partition -1: the partitioner's choice), serving delivery reports while
    librdkafka's local queue is full."""
    while True:
        try:
            producer.produce(topic, value, key, partition, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)
