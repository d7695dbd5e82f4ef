"""The `image_data` Kafka topic (an external asset) and the sample producers' messages sent to it."""

import pandas as pd
from dagster import AssetExecutionContext, AssetSpec, Config, MetadataValue, Output, asset
from pydantic import Field

from mlassets.datasets.cifar10 import images_array
from mlassets.datasets.cifar10 import CifarImages
from mlassets.metadata import markdown_table, table_metadata
from mlassets.names import IMAGE_TOPIC
from mlassets.resources import KafkaResource
from mlassets.streaming.image_producer import produce_images

image_data = AssetSpec(
    IMAGE_TOPIC,
    description="The Kafka topic IoT producers send CIFAR-10 images to (JSON, key = producer_id); "
                "the lag sensor records its consumer lag here.",
    group_name="iot",
    kinds={"kafka"},
)


class SampleImageMessagesConfig(Config):
    """How many simulated producers send how many images (the README's end-to-end run)."""

    producers: int = Field(default=4, ge=1, description="Number of producer ids (producer-1 ...).")
    images_per_producer: int = Field(default=250, ge=1, description="Images each producer sends.")
    rate: float = Field(default=0.0, ge=0, description="Images per second per producer; 0 = as fast as possible.")
    topic: str = Field(default=IMAGE_TOPIC, description="Topic to send to.")


@asset(deps=[image_data], kinds={"kafka"})
def sample_image_messages(context: AssetExecutionContext, config: SampleImageMessagesConfig, kafka: KafkaResource,
                          cifar10_images: pd.DataFrame) -> Output[pd.DataFrame]:
    """Per producer of one simulated run: the messages it sent to `image_data` and the id prefix they carry."""
    images = CifarImages(images_array(cifar10_images), cifar10_images["label"].to_numpy(),
                         cifar10_images["source"].to_numpy())
    summary = produce_images(kafka, images, config.producers, config.images_per_producer, config.rate,
                             config.topic, progress=False)
    frame = pd.DataFrame({
        "producer_id": [f"producer-{p + 1}" for p in range(config.producers)],
        "messages": config.images_per_producer,
        "id_prefix": [f"{summary.run_id}-producer-{p + 1}-" for p in range(config.producers)],
    })
    context.log.info(f"run {summary.run_id}: {summary.messages} images in {summary.seconds:.1f}s to {config.topic}")
    return Output(frame, metadata={
        **table_metadata(frame), "producer_run_id": summary.run_id, "messages": summary.messages,
        "images_per_second": round(summary.messages / max(summary.seconds, 1e-9), 1), "kafka_client": summary.client,
        "producers": MetadataValue.md(markdown_table(frame)),
    })
