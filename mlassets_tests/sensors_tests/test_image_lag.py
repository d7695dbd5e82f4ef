"""The image_data lag sensor against the real broker: one run per end offsets, never consuming."""

from dagster import AssetKey, SensorResult, build_sensor_context, instance_for_test

from mlassets.datasets.cifar10 import read_cifar10
from mlassets.resources import KafkaResource
from mlassets.sensors import build_image_data_lag_sensor
from mlassets.stack import StackSettings
from mlassets.streaming.image_producer import produce_images
from mlassets_tests.iot_helpers import create_topic


def _commit_everything(kafka: KafkaResource, topic: str, group: str) -> None:
    consumer = kafka.consumer(group, topic, consumer_timeout_ms=3000)
    for _ in consumer:
        pass
    consumer.commit()
    consumer.close()


def test_lag_sensor_requests_a_run_once_per_end_offsets(stack: StackSettings, data_dir, unique: str) -> None:
    topic, group = f"image_data_{unique}", f"g-{unique}"
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    sensor = build_image_data_lag_sensor(threshold=10, topic=topic, group=group)
    with instance_for_test() as instance:
        def tick(cursor: str | None) -> SensorResult:
            return sensor(build_sensor_context(instance=instance, cursor=cursor, resources={"kafka": kafka}))

        missing = tick(None)
        assert not missing.run_requests and "does not exist" in missing.skip_reason.skip_message
        assert topic not in kafka.admin().list_topics()  # reading offsets never creates the topic

        create_topic(stack, topic)
        produce_images(kafka, read_cifar10(data_dir / "cifar10"), producers=2, images_per_producer=4, topic=topic,
                       progress=False)
        below = tick(None)
        assert not below.run_requests and below.skip_reason.skip_message == "lag 8 < threshold 10"
        assert below.asset_events[0].asset_key == AssetKey(topic)
        assert below.asset_events[0].metadata["lag"].value == 8

        produce_images(kafka, read_cifar10(data_dir / "cifar10"), producers=2, images_per_producer=2, topic=topic,
                       progress=False)
        due = tick(None)
        (request,) = due.run_requests
        assert request.run_key == due.cursor and due.cursor.startswith(f"{topic}@")
        assert request.asset_selection == [AssetKey("inference_records")]
        assert due.asset_events[0].metadata["lag"].value == 12
        assert sum(due.asset_events[0].metadata["end_offsets"].value.values()) == 12

        again = tick(due.cursor)  # same end offsets: no second run
        assert not again.run_requests and again.cursor is None

        _commit_everything(kafka, topic, group)
        caught_up = tick(due.cursor)
        assert not caught_up.run_requests and caught_up.asset_events[0].metadata["lag"].value == 0
