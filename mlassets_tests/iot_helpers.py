"""Helpers of the IoT and streaming tests: a small stored model, a fresh topic, its settings and offsets."""

from __future__ import annotations

import json

from kafka import TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from mlassets.names import CIFAR_MODEL_COLLECTION, IMAGE_DATABASE, dlq_topic
from mlassets.resources import KafkaResource, MongoResource
from mlassets.stack import StackSettings


def small_model_id(mongo: MongoResource) -> str:
    """An untrained one-block CIFAR ResNet saved in the model store (the loop is under test, not the model)."""
    import keras

    from mlassets.models.cifar_resnet import build_cifar_resnet

    keras.utils.set_random_seed(0)
    model = build_cifar_resnet(1)
    return mongo.model_store(IMAGE_DATABASE, CIFAR_MODEL_COLLECTION).save("cifar_classifier_test", model).model_id


def create_topic(stack: StackSettings, topic: str, partitions: int = 4,
                 dlq_max_message_bytes: int | None = None) -> KafkaResource:
    """A topic and its dead-letter topic (refusing larger records if given) on the test broker; the Kafka resource."""
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    dlq_configs = {"max.message.bytes": str(dlq_max_message_bytes)} if dlq_max_message_bytes else None
    admin = kafka.admin()
    admin.create_topics([NewTopic(topic, partitions, 1), NewTopic(f"{topic}.dlq", 1, 1, topic_configs=dlq_configs)])
    admin.close()
    return kafka


def set_topic_config(kafka: KafkaResource, topic: str, configs: dict[str, str]) -> None:
    """Change settings of an existing topic on the broker."""
    admin = kafka.admin()
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    finally:
        admin.close()


def committed_offset(kafka: KafkaResource, topic: str, group: str, partition: int = 0) -> int | None:
    """The group's committed offset of one partition (None: nothing committed)."""
    probe = kafka.consumer(group)
    try:
        return probe.committed(TopicPartition(topic, partition))
    finally:
        probe.close()


def dead_letters(kafka: KafkaResource, topic: str) -> list[dict]:
    """Every dead letter of a topic so far, as the JSON objects the drains wrote."""
    consumer = kafka.consumer(None, dlq_topic(topic), consumer_timeout_ms=5000)
    try:
        return [json.loads(record.value) for record in consumer]
    finally:
        consumer.close()
