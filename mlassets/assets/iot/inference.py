"""The inference records asset: drain `image_data`, classify in batches, upsert into MongoDB."""

from collections.abc import Iterator

import pandas as pd
from dagster import (AssetCheckResult, AssetCheckSeverity, AssetCheckSpec, AssetExecutionContext, Config,
                     MaterializeResult, MetadataValue, asset)
from pydantic import Field

from mlassets.assets.iot.stream import image_data, sample_image_messages
from mlassets.automation import RECORDS_FRESHNESS, TRANSIENT_RETRY, refused_model_fails_at_once
from mlassets.metadata import markdown_table
from mlassets.names import IMAGE_DATABASE, IMAGE_TOPIC, INFERENCE_COLLECTION, INFERENCE_GROUP, dlq_topic
from mlassets.resources import KafkaResource, MongoResource
from mlassets.streaming.inference import classify_stream


class InferenceRecordsConfig(Config):
    """How the drain reads the topic and batches the classifier."""

    batch_size: int = Field(default=256, ge=1, description="Messages classified and written per batch.")
    topic: str = Field(default=IMAGE_TOPIC, description="Topic of image messages; dead letters go to <topic>.dlq.")
    group: str = Field(default=INFERENCE_GROUP, description="Consumer group whose committed offsets are advanced.")
    stall_timeout_s: float = Field(default=90.0, gt=0,
                                   description="Fail when the drain makes no progress for this long before the end.")
    database: str = Field(default=IMAGE_DATABASE, description="Mongo database of the `inferences` collection.")


@asset(
    deps=[image_data, sample_image_messages],
    kinds={"kafka", "mongodb", "tensorflow"},
    freshness_policy=RECORDS_FRESHNESS,
    retry_policy=TRANSIENT_RETRY,
    check_specs=[AssetCheckSpec("no_dead_letters", asset="inference_records",
                                description="every message of the drain was a well-formed image message")],
)
def inference_records(context: AssetExecutionContext, config: InferenceRecordsConfig, kafka: KafkaResource,
                      mongo: MongoResource, cifar_classifier: pd.DataFrame
                      ) -> Iterator[MaterializeResult | AssetCheckResult]:
    """Mongo `image_database.inferences`: one document per image message (_id = ID) with its inferred class."""
    model_id = str(cifar_classifier["model_id"].iloc[0])
    with refused_model_fails_at_once():
        summary = classify_stream(kafka, mongo, model_id, config.database, topic=config.topic, group=config.group,
                                  batch_size=config.batch_size, stall_timeout_s=config.stall_timeout_s)
    context.log.info(f"{summary.stored} stored, {summary.dead_letters} dead letters in {summary.seconds:.1f}s")
    reasons = pd.DataFrame(sorted(summary.reasons.items()), columns=["reason", "messages"])
    yield MaterializeResult(metadata={
        "model_version": model_id,
        "stored": summary.stored,
        "dead_letters": summary.dead_letters,
        "dead_letter_reasons": MetadataValue.md(markdown_table(reasons) if len(reasons) else "none"),
        "batches": summary.batches,
        "commits_not_taken": summary.commits_not_taken,
        "images_per_second": round(summary.stored / max(summary.seconds, 1e-9), 1),
        "kafka_client": summary.client,
        "collection": f"{config.database}.{INFERENCE_COLLECTION}",
        "dead_letter_topic": dlq_topic(config.topic),
    })
    yield AssetCheckResult(check_name="no_dead_letters", passed=summary.dead_letters == 0,
                           severity=AssetCheckSeverity.WARN,
                           metadata={"dead_letters": summary.dead_letters, **summary.reasons})
