"""The image producers against the real broker: librdkafka by default, kafka-python for settings it cannot express."""

from collections import defaultdict

import pytest
from kafka import KafkaConsumer

from mlassets.datasets.cifar10 import read_cifar10
from mlassets.resources import KafkaResource
from mlassets.stack import StackSettings
from mlassets.streaming.image_messages import decode_image_message
from mlassets.streaming.image_producer import produce_images
from mlassets_tests.iot_helpers import create_topic


class _KafkaPythonOnly(KafkaResource):
    """A connection with a setting librdkafka has no property for, so the producers fall back to kafka-python."""

    def producer_config(self, **overrides):
        return super().producer_config(**{"max_block_ms": 30_000, **overrides})


class _QuicklyFailingKafka(KafkaResource):
    """Producers that give up bootstrapping after 2 s instead of 30."""

    def producer_config(self, **overrides):
        return super().producer_config(**{"bootstrap_timeout_ms": 2000, **overrides})


def _partitions_by_producer(stack: StackSettings, topic: str, run_id: str) -> dict[str, set[int]]:
    """For each producer id of `run_id`: the partitions its messages landed on (each message decoded and checked)."""
    consumer = KafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    seen: dict[str, set[int]] = defaultdict(set)
    seqs: dict[str, list[int]] = defaultdict(list)
    for record in consumer:
        message = decode_image_message(record.value)
        if message.id.startswith(run_id):
            assert record.key.decode() == message.producer_id
            seen[message.producer_id].add(record.partition)
            seqs[message.producer_id].append(message.seq)
    consumer.close()
    # each producer's messages in order within its partition, none lost or doubled
    assert all(s == list(range(len(s))) for s in seqs.values()), {p: s[:10] for p, s in seqs.items()}
    return dict(seen)


@pytest.mark.parametrize("resource, client", [(KafkaResource, "confluent-kafka"), (_KafkaPythonOnly, "kafka-python")])
def test_both_clients_send_every_image_keyed_to_the_same_partitions(stack: StackSettings, data_dir, unique: str,
                                                                    resource: type, client: str) -> None:
    topic = f"image_data_{unique}"
    create_topic(stack, topic, partitions=4)
    kafka = resource(bootstrap_servers=stack.kafka_bootstrap)
    sent = produce_images(kafka, read_cifar10(data_dir / "cifar10"), producers=5, images_per_producer=40,
                          topic=topic, progress=False)
    assert sent.client == client and sent.messages == 200
    partitions = _partitions_by_producer(stack, topic, sent.run_id)
    assert sorted(partitions) == [f"producer-{p}" for p in range(1, 6)]
    assert all(len(p) == 1 for p in partitions.values())  # one partition per key: per-producer order holds
    # kafka-python's and the Java client's murmur2 partitioner, whichever client sends
    from kafka.partitioner.default import murmur2

    assert partitions == {f"producer-{p}": {(murmur2(f"producer-{p}".encode()) & 0x7FFFFFFF) % 4}
                          for p in range(1, 6)}


def test_an_unreachable_broker_fails_within_the_bootstrap_timeout(data_dir) -> None:
    kafka = _QuicklyFailingKafka(bootstrap_servers="127.0.0.1:1")  # nothing listens there
    with pytest.raises(ConnectionError, match=r"cannot reach the Kafka brokers 127.0.0.1:1 within 2 s"):
        produce_images(kafka, read_cifar10(data_dir / "cifar10"), producers=1, images_per_producer=5,
                       topic="image_data_unreachable", progress=False)
