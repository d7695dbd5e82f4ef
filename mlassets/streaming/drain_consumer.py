"""The drain's consumer of one topic in a group: batches of records, the partitions' positions, synchronous commits.

librdkafka (confluent-kafka) fetches and checks records in native threads, without the GIL; kafka-python remains for
the settings librdkafka cannot express (the `AWS_MSK_IAM` mechanism).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka import TopicPartition as RdTopicPartition
from kafka import TopicPartition
from kafka.errors import CommitFailedError, KafkaTimeoutError, RebalanceInProgressError
from kafka.structs import OffsetAndMetadata

from mlassets.resources.kafka import KafkaResource
from mlassets.streaming.librdkafka import (KAFKA_PYTHON, LIBRDKAFKA, librdkafka_config, topic_metadata,
                                           unreachable_brokers)

# A short session lets a rerun take over the partitions of a killed member within seconds.
SESSION_TIMEOUT_MS = 10_000
# About 2,400 messages of 3.4 KiB per partition and fetch, several batches of 256. At kafka-python's default of 1 MiB
# (about 300 messages), every fetch ended in a short batch and a wait for the next fetch: 14-16 s instead of 11 s
# for a drain of 40,000 images, the CNN idle in between.
FETCH_BYTES_PER_PARTITION = 8 * 2**20
PREFETCH_KIB = 32 * 1024  # librdkafka's local queue per consumer (its default, 64 MiB, is more than a drain uses)
# librdkafka's answers to a commit the group cannot take now, all passing: the member was left behind (its session
# timed out while the broker was away, a rebalance gave its partitions out again; it rejoins by itself), or the group's
# coordinator is away or moving.
_COMMIT_NOT_TAKEN = frozenset({
    KafkaError.ILLEGAL_GENERATION, KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.FENCED_INSTANCE_ID, KafkaError._ASSIGNMENT_LOST,
    KafkaError._WAIT_COORD, KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS, KafkaError._TRANSPORT, KafkaError._TIMED_OUT,
    KafkaError.REQUEST_TIMED_OUT, KafkaError._ALL_BROKERS_DOWN, KafkaError.NETWORK_EXCEPTION,
})


class CommitNotTaken(RuntimeError):
    """A commit the group could not take now (a rebalance, or its coordinator away); nothing was committed."""


class Record(NamedTuple):
    """One consumed message: where it was read and its key and value."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class DrainConsumer(Protocol):
    """A group member reading one topic: the records it polls carry topic, partition, offset, key and value."""

    client: str

    def end_offsets(self) -> dict[int, int]:
        """The end offset of each partition of the topic, now."""

    def poll(self, max_records: int, timeout_s: float) -> list[Any]:
        """Up to max_records records: those already fetched at once, else the first to arrive within timeout_s."""

    def positions(self) -> dict[int, int | None]:
        """The next offset to read in each assigned partition (None: not known yet)."""

    def commit(self, offsets: dict[int, int]) -> None:
        """Commit the next offset to read of each partition (synchronously); CommitNotTaken when passing."""

    def close(self) -> None:
        """Leave the group and release the connections."""


def drain_consumer(kafka: KafkaResource, group: str, topic: str, max_records: int,
                   client: str | None = None) -> DrainConsumer:
    """The drain's consumer of `topic` in `group` through `client` (None: librdkafka where the settings allow).

    ConnectionError when no broker answers within the resource's request timeout.
    """
    if client not in (None, LIBRDKAFKA, KAFKA_PYTHON):
        raise ValueError(f"unknown Kafka client {client!r}: {LIBRDKAFKA} or {KAFKA_PYTHON}")
    connection = kafka.connection_config()
    properties = librdkafka_config({k: v for k, v in connection.items() if k != "request_timeout_ms"})
    if client == LIBRDKAFKA and properties is None:
        raise ValueError(f"SASL mechanism {kafka.sasl_mechanism}: librdkafka cannot consume with these settings")
    if client == KAFKA_PYTHON or properties is None:
        return KafkaPythonDrainConsumer(kafka, group, topic, max_records)
    return LibrdkafkaDrainConsumer(properties, group, topic, connection["request_timeout_ms"] / 1000)


class LibrdkafkaDrainConsumer:
    """The drain's consumer through librdkafka; positions come from the records and end-of-partition events."""

    client = LIBRDKAFKA

    def __init__(self, properties: dict[str, Any], group: str, topic: str, timeout_s: float) -> None:
        self.topic, self.timeout_s = topic, timeout_s
        self._consumer = Consumer({
            **properties, "group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest",
            "session.timeout.ms": SESSION_TIMEOUT_MS, "max.partition.fetch.bytes": FETCH_BYTES_PER_PARTITION,
            "queued.max.messages.kbytes": PREFETCH_KIB, "enable.partition.eof": True,
        })
        try:
            metadata = topic_metadata(self._consumer, properties, topic, timeout_s)
        except ConnectionError:
            self._consumer.close()
            raise
        self._partitions = sorted(metadata.partitions) if metadata is not None else []
        self._next: dict[int, int] = {}  # the next offset of each partition read since its assignment
        self._consumer.subscribe([topic], on_revoke=self._on_revoke, on_lost=self._on_revoke)

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._next.pop(tp.partition, None)  # a partition assigned again resumes from its committed offset

    def end_offsets(self) -> dict[int, int]:
        watermarks = self._consumer.get_watermark_offsets
        return {p: watermarks(RdTopicPartition(self.topic, p), timeout=self.timeout_s)[1] for p in self._partitions}

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        messages = self._consumer.consume(max_records, 0) or self._consumer.consume(max_records, timeout_s)
        records = []
        for message in messages:
            error, partition, offset = message.error(), message.partition(), message.offset()
            if error is None:
                records.append(Record(self.topic, partition, offset, message.key(), message.value()))
                self._next[partition] = offset + 1
            elif error.code() == KafkaError._PARTITION_EOF:
                self._next[partition] = offset
            elif error.fatal():
                raise KafkaException(error)
            # other errors (a broker away, a rebalance) are retried by librdkafka; the drain's stall timeout bounds them
        return records

    def positions(self) -> dict[int, int | None]:
        return {tp.partition: self._next.get(tp.partition) for tp in self._consumer.assignment()}

    def commit(self, offsets: dict[int, int]) -> None:
        try:
            self._consumer.commit(offsets=[RdTopicPartition(self.topic, p, o) for p, o in offsets.items()],
                                  asynchronous=False)
        except KafkaException as exc:
            error = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if error is not None and (error.code() in _COMMIT_NOT_TAKEN or error.retriable()):
                raise CommitNotTaken(f"{self.topic}: commit of {offsets} not taken: {error.str()}") from exc
            raise

    def close(self) -> None:
        self._consumer.close()


class KafkaPythonDrainConsumer:
    """The drain's consumer through kafka-python."""

    client = KAFKA_PYTHON

    def __init__(self, kafka: KafkaResource, group: str, topic: str, max_records: int) -> None:
        self.topic = topic
        try:
            self._consumer = kafka.consumer(group, topic, max_poll_records=max_records,
                                            session_timeout_ms=SESSION_TIMEOUT_MS,
                                            max_partition_fetch_bytes=FETCH_BYTES_PER_PARTITION,
                                            bootstrap_timeout_ms=kafka.request_timeout_ms)
        except KafkaTimeoutError as exc:
            raise unreachable_brokers(kafka.bootstrap_servers, kafka.request_timeout_ms / 1000, str(exc)) from None

    def end_offsets(self) -> dict[int, int]:
        partitions = self._consumer.partitions_for_topic(self.topic) or set()
        ends = self._consumer.end_offsets([TopicPartition(self.topic, p) for p in partitions])
        return {tp.partition: offset for tp, offset in ends.items()}

    def poll(self, max_records: int, timeout_s: float) -> list[Any]:
        polled = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        return [record for part in polled.values() for record in part]

    def positions(self) -> dict[int, int | None]:
        return {tp.partition: self._consumer.position(tp) for tp in self._consumer.assignment()}

    def commit(self, offsets: dict[int, int]) -> None:
        try:
            self._consumer.commit({TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                                   for p, o in offsets.items()})
        except (CommitFailedError, RebalanceInProgressError) as exc:
            raise CommitNotTaken(f"{self.topic}: commit of {offsets} not taken: {exc}") from exc

    def close(self) -> None:
        self._consumer.close()
