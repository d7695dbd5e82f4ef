"""inference_records against the real broker and FerretDB."""

import json
import time

import pandas as pd
from dagster import AssetCheckSeverity, MaterializeResult, build_asset_context

from mlassets.assets.iot.inference import InferenceRecordsConfig, inference_records
from mlassets.datasets.cifar10 import LABELS, read_cifar10
from mlassets.resources import MongoResource
from mlassets.stack import StackSettings
from mlassets.streaming.image_messages import encode_image_message
from mlassets.streaming.image_producer import produce_images
from mlassets.streaming.librdkafka import LIBRDKAFKA
from mlassets_tests.iot_helpers import create_topic, small_model_id


def test_inference_records_upserts_each_id_once_and_dead_letters_bad_messages(stack: StackSettings, data_dir,
                                                                              unique: str) -> None:
    topic, database = f"image_data_{unique}", f"image_database_{unique}"
    kafka = create_topic(stack, topic)
    mongo = MongoResource(uri=stack.mongo_uri)
    images = read_cifar10(data_dir / "cifar10")
    sent = produce_images(kafka, images, producers=3, images_per_producer=20, topic=topic, progress=False)
    producer = kafka.producer()
    duplicate = encode_image_message("dup-1", "producer-9", 0, "cat", images.images[3], time.time())
    producer.send(topic, key=duplicate[0], value=duplicate[1])
    producer.send(topic, key=duplicate[0], value=duplicate[1])
    producer.send(topic, key=b"producer-9", value=b"not json at all")
    producer.flush()
    producer.close()

    model_id = small_model_id(mongo)
    config = InferenceRecordsConfig(topic=topic, group=f"g-{unique}", database=database, batch_size=16,
                                    stall_timeout_s=60)
    result, check = list(inference_records(build_asset_context(), config=config, kafka=kafka, mongo=mongo,
                                           cifar_classifier=pd.DataFrame({"model_id": [model_id]})))
    assert isinstance(result, MaterializeResult)
    assert result.metadata["stored"] == 62 and result.metadata["dead_letters"] == 1
    assert result.metadata["model_version"] == model_id
    assert result.metadata["kafka_client"] == LIBRDKAFKA  # the default settings consume through librdkafka
    assert not check.passed and check.severity == AssetCheckSeverity.WARN

    docs = list(mongo.client()[database]["inferences"].find({}))
    assert len(docs) == 61  # 60 images plus the duplicated one, stored once
    assert {d["_id"] for d in docs} == {f"{sent.run_id}-producer-{p}-{s}" for p in (1, 2, 3) for s in range(20)} | {
        "dup-1"}
    assert all(d["InferredValue"] in LABELS and 0 <= d["confidence"] <= 1 for d in docs)
    assert all(d["model_version"] == model_id and d["GroundTruth"] in LABELS for d in docs)
    assert all({"producer_id", "inferred_at", "partition", "offset"} <= d.keys() for d in docs)

    dlq = kafka.consumer(None, f"{topic}.dlq", consumer_timeout_ms=5000)
    letters = [json.loads(r.value) for r in dlq]
    dlq.close()
    assert [letter["reason"].split(":")[0] for letter in letters] == ["invalid JSON"]
    assert letters[0]["value"] == "not json at all"
