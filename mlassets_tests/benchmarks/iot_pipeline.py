"""IoT: producers -> Kafka -> batched CNN -> Mongo vs the bare classifier; the error table vs a server-side count."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from pathlib import Path

import numpy as np
from kafka.admin import NewTopic

from mlassets.datasets.cifar10 import LABELS, read_cifar10
from mlassets.resources import KafkaResource, MongoResource
from mlassets.stack import LocalStack
from mlassets.streaming.image_producer import produce_images
from mlassets.streaming.inference import drain_inference, model_classifier
from mlassets_tests.benchmarks.common import REPO, report

PRODUCERS = int(os.environ.get("BENCH_IOT_PRODUCERS", 4))
IMAGES = int(os.environ.get("BENCH_IOT_IMAGES", 10_000))
BATCH = int(os.environ.get("BENCH_IOT_BATCH", 256))
TABLE_DOCS = int(os.environ.get("BENCH_IOT_TABLE_DOCS", 1_000_000))
DATA = Path(os.environ.get("MLASSETS_TEST_DATA", REPO.parent / "shared" / "data"))


def _model():
    import keras

    from mlassets.models.cifar_resnet import build_cifar_resnet

    keras.utils.set_random_seed(0)
    return build_cifar_resnet(3)  # ResNet-20; untrained weights cost the same to run


def pipeline(stack: LocalStack) -> None:
    """End-to-end images/s (produce, then drain into Mongo) over the bare batched classifier's images/s."""
    kafka = KafkaResource(bootstrap_servers=stack.settings.kafka_bootstrap)
    topic = f"bench_images_{uuid.uuid4().hex[:8]}"
    admin = kafka.admin()
    admin.create_topics([NewTopic(topic, 4, 1), NewTopic(f"{topic}.dlq", 1, 1)])
    admin.close()
    images = read_cifar10(DATA / "cifar10")
    classify = model_classifier(_model())
    sample = np.resize(images.images, (min(PRODUCERS * IMAGES, 20_000), 32, 32, 3))
    classify(sample[:BATCH])  # warm-up
    start = time.perf_counter()
    for offset in range(0, len(sample), BATCH):
        classify(sample[offset:offset + BATCH])
    bare = len(sample) / (time.perf_counter() - start)

    produced = produce_images(kafka, images, PRODUCERS, IMAGES, topic=topic, progress=False)
    collection = MongoResource(uri=stack.settings.mongo_uri).client()[f"bench_{topic}"]["inferences"]
    drained = drain_inference(kafka, collection, classify, "bench:v1", topic=topic, group=f"g-{topic}",
                              batch_size=BATCH)
    assert drained.stored == PRODUCERS * IMAGES and collection.count_documents({}) == PRODUCERS * IMAGES
    total = PRODUCERS * IMAGES
    report("iot_end_to_end", total / (produced.seconds + drained.seconds), bare, "images/s",
           producers=PRODUCERS, images=total, produce_s=round(produced.seconds, 1), drain_s=round(drained.seconds, 1),
           drain_images_per_s=round(total / drained.seconds, 1), batch=BATCH)
    report("iot_drain_only", total / drained.seconds, bare, "images/s", images=total, batch=BATCH)
    collection.database.client.drop_database(collection.database.name)


def error_table(stack: LocalStack) -> None:
    """producer_error_counts' Spark job over TABLE_DOCS records vs the server's own $group count of them."""
    from dagster import TimeWindow

    from mlassets.assets.iot.error_tables import count_producer_errors, inference_days
    from mlassets.environments import load_environment

    database = f"bench_tables_{uuid.uuid4().hex[:8]}"
    collection = MongoResource(uri=stack.settings.mongo_uri).client()[database]["inferences"]
    rng = np.random.default_rng(0)
    day = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    for offset in range(0, TABLE_DOCS, 20_000):
        n = min(20_000, TABLE_DOCS - offset)
        truth, inferred = rng.integers(0, 10, n), rng.integers(0, 10, n)
        collection.insert_many([{
            "_id": f"r{offset + i}", "producer_id": f"producer-{i % 4 + 1}", "GroundTruth": LABELS[truth[i]],
            "InferredValue": LABELS[inferred[i]], "inferred_at": day + dt.timedelta(seconds=int(i % 80_000)),
            "sent_at": day} for i in range(n)], ordered=False)
    os.environ.update({"MLASSETS_MONGO_URI": stack.settings.mongo_uri, "MLASSETS_SPARK_MASTER": "local[*]",
                       "MLASSETS_IVY_DIR": str(REPO / ".cache" / "ivy")})
    spark = load_environment("local")["spark"].spark_session
    window = TimeWindow(day, day + dt.timedelta(days=1))
    count_producer_errors(inference_days(spark, window, database))  # warm-up: jars, JVM, connector
    start = time.perf_counter()
    table = count_producer_errors(inference_days(spark, window, database))
    seconds = time.perf_counter() - start
    assert int(table["total_inferences"].sum()) == TABLE_DOCS
    start = time.perf_counter()
    server = list(collection.aggregate([{"$match": {"inferred_at": {"$gte": window.start, "$lt": window.end}}},
                                        {"$group": {"_id": "$producer_id", "n": {"$sum": 1}}}]))
    server_s = time.perf_counter() - start
    assert sum(g["n"] for g in server) == TABLE_DOCS
    report("iot_error_table", TABLE_DOCS / seconds, TABLE_DOCS / server_s, "records/s", seconds=round(seconds, 2),
           server_group_s=round(server_s, 2), documents=TABLE_DOCS)
    collection.database.client.drop_database(database)


def run(stack: LocalStack) -> None:
    pipeline(stack)
    error_table(stack)
