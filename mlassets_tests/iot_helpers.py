"""Helpers of the IoT tests: a small stored model, a fresh topic, the resources of the test stack."""

from __future__ import annotations

from kafka.admin import NewTopic

from mlassets.assets.iot.classifier import MODEL_COLLECTION, MODEL_DATABASE
from mlassets.resources import KafkaResource, MongoResource
from mlassets.stack import StackSettings


def small_model_id(mongo: MongoResource) -> str:
    """An untrained one-block CIFAR ResNet saved in the model store (the loop is under test, not the model)."""
    import keras

    from mlassets.models.cifar_resnet import build_cifar_resnet

    keras.utils.set_random_seed(0)
    model = build_cifar_resnet(1)
    return mongo.model_store(MODEL_DATABASE, MODEL_COLLECTION).save("cifar_classifier_test", model).model_id


def create_topic(stack: StackSettings, topic: str, partitions: int = 4) -> KafkaResource:
    """A topic and its dead-letter topic on the test broker; returns the Kafka resource."""
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    admin = kafka.admin()
    admin.create_topics([NewTopic(topic, partitions, 1), NewTopic(f"{topic}.dlq", 1, 1)])
    admin.close()
    return kafka
