"""IoT: producers -> Kafka -> batched CNN -> Mongo vs the bare classifier; the error table vs a server-side count."""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import time
import uuid

import numpy as np
from kafka.admin import NewTopic

from mlassets.datasets.cifar10 import LABELS, read_cifar10
from mlassets.names import INFERENCE_COLLECTION, dlq_topic
from mlassets.resources import KafkaResource, MongoResource
from mlassets.stack import LocalStack
from mlassets.streaming.image_producer import ProduceSummary, produce_images
from mlassets.streaming.inference import DrainSummary, drain_inference, model_classifier
from mlassets.streaming.librdkafka import KAFKA_PYTHON, LIBRDKAFKA
from benchmarks.common import cpu_seconds, report
from mlassets.paths import sample_data_dir

PRODUCERS = int(os.environ.get("BENCH_IOT_PRODUCERS", 4))
IMAGES = int(os.environ.get("BENCH_IOT_IMAGES", 10_000))
BATCH = int(os.environ.get("BENCH_IOT_BATCH", 256))
TABLE_DOCS = int(os.environ.get("BENCH_IOT_TABLE_DOCS", 1_000_000))
DATA = sample_data_dir()


def _model():
    """The CNN the `cifar_classifier` defaults build (the one the drain serves); untrained weights cost the same."""
    import keras

    from mlassets.assets.iot.classifier import CifarClassifierConfig, build_model

    keras.utils.set_random_seed(0)
    return build_model(CifarClassifierConfig())


def _produce_in_child(bootstrap: str, topic: str, started: "multiprocessing.Queue") -> None:
    """The producers as their own process, as IoT devices are: report the wall time of the first send, send, then
    report the CPU seconds the sending took and the Kafka client."""
    kafka = KafkaResource(bootstrap_servers=bootstrap)
    images = read_cifar10(DATA / "cifar10")
    started.put(time.time())
    cpu = time.process_time()
    sent = produce_images(kafka, images, PRODUCERS, IMAGES, topic=topic, progress=False)
    started.put((time.process_time() - cpu, sent.client))


def _bare_images_per_s(classify, sample: np.ndarray) -> tuple[float, float]:
    """The batched classifier alone on in-memory uint8 arrays: (images/s, CPU milliseconds per image)."""
    start, cpu_start = time.perf_counter(), cpu_seconds()
    for offset in range(0, len(sample), BATCH):
        classify(sample[offset:offset + BATCH])
    return len(sample) / (time.perf_counter() - start), 1000 * (cpu_seconds() - cpu_start) / len(sample)


def _cpu_by_process(stack: LocalStack) -> dict[str, float]:
    """CPU seconds so far of this process (the drain), the Kafka broker and FerretDB."""
    return {"drain_process": cpu_seconds(), "kafka": cpu_seconds(stack.kafka.proc.pid()),
            "ferretdb": cpu_seconds(stack.mongo.proc.pid())}


def _cpu_ms_per_image(before: dict[str, float], after: dict[str, float], images: int) -> dict[str, float]:
    """CPU milliseconds per image of each process between two _cpu_by_process readings."""
    return {k: round(1000 * (v - before[k]) / images, 3) for k, v in after.items()}


def _new_topic(kafka: KafkaResource) -> str:
    topic = f"bench_images_{uuid.uuid4().hex[:8]}"
    admin = kafka.admin()
    admin.create_topics([NewTopic(topic, 4, 1), NewTopic(dlq_topic(topic), 1, 1)])
    admin.close()
    return topic


def pipeline(stack: LocalStack) -> None:
    """End-to-end images/s (producers and the drain running at once) and drain-only images/s, over the bare classifier.

    The bare figure is the mean of a run before and a run after the pipelines, so a change in machine load during
    the benchmark moves the ceiling with it. Each report also gives the CPU per image of every process at work (for
    end to end: the producers, the drain, the broker and FerretDB) and the ratios that CPU allows on these cores.
    """
    kafka = KafkaResource(bootstrap_servers=stack.settings.kafka_bootstrap)
    images = read_cifar10(DATA / "cifar10")
    model_classify = model_classifier(_model())
    sample = np.resize(images.images, (min(PRODUCERS * IMAGES, 20_000), 32, 32, 3))
    model_classify(sample[:BATCH])  # warm-up
    bare_before, bare_cpu_before_ms = _bare_images_per_s(model_classify, sample)
    total = PRODUCERS * IMAGES
    mongo = MongoResource(uri=stack.settings.mongo_uri).client()
    database = mongo[f"bench_{uuid.uuid4().hex[:8]}"]

    classified = [0]

    def classify(batch: np.ndarray):
        result = model_classify(batch)
        classified[0] += len(batch)
        return result

    topic = _new_topic(kafka)
    cpu_before = _cpu_by_process(stack)
    started = multiprocessing.get_context("spawn").Queue()
    producers = multiprocessing.get_context("spawn").Process(
        target=_produce_in_child, args=(stack.settings.kafka_bootstrap, topic, started))
    producers.start()
    first_send = started.get(timeout=300)
    concurrent = drain_inference(kafka, database["e2e"], classify, "bench:v1", topic=topic, group=f"g-{topic}",
                                 batch_size=BATCH, stop_at_end=False, should_stop=lambda: classified[0] >= total)
    end_to_end_s = time.time() - first_send
    cpu_after = _cpu_by_process(stack)
    producer_cpu_s, client = started.get(timeout=120)
    producers.join(timeout=120)
    assert producers.exitcode == 0, f"the producer process exited with {producers.exitcode}"
    assert concurrent.stored == total and database["e2e"].count_documents({}) == total
    end_to_end_cpu = _cpu_ms_per_image(cpu_before, cpu_after, total)
    end_to_end_cpu["producers"] = round(1000 * producer_cpu_s / total, 3)

    # the drain alone: librdkafka's consumer (the default), then kafka-python's on a topic filled the same way
    drains = {client: _drain_only(stack, kafka, images, model_classify, database[client], client)
              for client in (LIBRDKAFKA, KAFKA_PYTHON)}
    bare_after, bare_cpu_after_ms = _bare_images_per_s(model_classify, sample)
    bare, bare_cpu_ms = (bare_before + bare_after) / 2, (bare_cpu_before_ms + bare_cpu_after_ms) / 2
    report("iot_end_to_end", total / end_to_end_s, bare, "images/s", producers=PRODUCERS, images=total,
           seconds=round(end_to_end_s, 1), batch=BATCH, batches=concurrent.batches, bare_before=round(bare_before, 1),
           bare_after=round(bare_after, 1), producer_client=client, consumer_client=concurrent.client,
           **_cpu_bounds(end_to_end_cpu, bare, bare_cpu_ms))
    for client, (drained, produced, drain_cpu) in drains.items():
        report("iot_drain_only" if client == LIBRDKAFKA else "iot_drain_only_kafka_python", total / drained.seconds,
               bare, "images/s", images=total, batch=BATCH, batches=drained.batches, consumer_client=drained.client,
               drain_s=round(drained.seconds, 1), produce_s=round(produced.seconds, 1),
               produce_images_per_s=round(total / produced.seconds, 1), producer_client=produced.client,
               **_cpu_bounds(drain_cpu, bare, bare_cpu_ms))
    mongo.drop_database(database.name)


def _cpu_bounds(cpu_ms_per_image: dict[str, float], bare_images_per_s: float, bare_cpu_ms: float) -> dict:
    """The CPU ms per image of each process at work, and the ratios that CPU allows on this machine's cores."""
    # every process of the benchmark (drain, producers, broker, FerretDB) runs on the same cores as this one
    total_ms, cores = sum(cpu_ms_per_image.values()), len(os.sched_getaffinity(0))
    return {"cpu_ms_per_image": cpu_ms_per_image, "bare_cnn_cpu_ms_per_image": round(bare_cpu_ms, 3),
            "cpu_bound_ratio": round(bare_cpu_ms / total_ms, 3),
            "cpu_bound_ratio_is": "the bare CNN's CPU per image over that of every process at work: the best ratio "
                                  "if they together used the cores as fully as the bare CNN does",
            "cores_bound_ratio": round(1000 * cores / total_ms / bare_images_per_s, 3),
            "cores_bound_ratio_is": f"every one of the {cores} cores busy all the time with the CPU per image "
                                    "measured: no run doing this work can reach a higher ratio"}


def _drain_only(stack: LocalStack, kafka: KafkaResource, images, classify, collection,
                client: str) -> tuple[DrainSummary, ProduceSummary, dict[str, float]]:
    """Fill a new topic, then drain it through `client`: the drain, the produce and the CPU ms per image by process."""
    total = PRODUCERS * IMAGES
    topic = _new_topic(kafka)
    produced = produce_images(kafka, images, PRODUCERS, IMAGES, topic=topic, progress=False)
    cpu_before = _cpu_by_process(stack)
    drained = drain_inference(kafka, collection, classify, "bench:v1", topic=topic, group=f"g-{topic}",
                              batch_size=BATCH, client=client)
    drain_cpu = _cpu_ms_per_image(cpu_before, _cpu_by_process(stack), total)
    assert drained.stored == total and collection.count_documents({}) == total
    return drained, produced, drain_cpu


def error_table(stack: LocalStack, backend: str = "sqlite") -> None:
    """producer_error_counts' Spark job over TABLE_DOCS records vs the server's own $match + $group count of them.

    The records carry the tallies the drain writes. `seconds` is the job: the server groups the window's records by
    their producer tally and Spark sums the rows. The ceiling, `server_group_s`, is FerretDB's `$match` of the
    records inferred in the window and `$group` by producer; `server_window_group_s` is the same with the job's own
    window filter (inferred in the window, or pending and sent in it: an `$or` that FerretDB evaluates per record).
    `records_path_s` is the same table counted from every record on Spark, as the job did before the tallies, and
    `server_read_s` is pymongo pulling those records with the fields it reads (what the connector receives then).
    """
    from mlassets.environments import load_environment
    from mlassets.tables.error_tables import INFERENCE_FIELDS, PRODUCER_ERROR_COUNTS, Window, count_day_table
    from mlassets.tables.tallies import record_tallies

    database = f"bench_tables_{uuid.uuid4().hex[:8]}"
    collection = MongoResource(uri=stack.settings.mongo_uri).client()[database][INFERENCE_COLLECTION]
    rng = np.random.default_rng(0)
    day = dt.datetime(2026, 11, 20, tzinfo=dt.timezone.utc)
    for offset in range(0, TABLE_DOCS, 20_000):
        n = min(20_000, TABLE_DOCS - offset)
        truth, inferred = rng.integers(0, 10, n), rng.integers(0, 10, n)
        at = [day + dt.timedelta(seconds=int(i % 80_000)) for i in range(n)]
        collection.insert_many([{
            "_id": f"r{offset + i}", "producer_id": f"producer-{i % 4 + 1}", "GroundTruth": LABELS[truth[i]],
            "InferredValue": LABELS[inferred[i]], "inferred_at": at[i], "sent_at": day,
            **record_tallies(at[i], f"producer-{i % 4 + 1}", LABELS[truth[i]], LABELS[inferred[i]])}
            for i in range(n)], ordered=False)
    os.environ.update({"MLASSETS_MONGO_URI": stack.settings.mongo_uri, "MLASSETS_SPARK_MASTER": "local[*]"})
    spark = load_environment("local")["spark"].spark_session
    window = Window(day, day + dt.timedelta(days=1))
    count_day_table(PRODUCER_ERROR_COUNTS, spark, window, database)  # warm-up: jars, JVM, connector
    start = time.perf_counter()
    counted = count_day_table(PRODUCER_ERROR_COUNTS, spark, window, database)
    seconds = time.perf_counter() - start
    assert counted.by_tallies == int(counted.rows["total_inferences"].sum()) == TABLE_DOCS
    start = time.perf_counter()
    by_record = count_day_table(PRODUCER_ERROR_COUNTS, spark, window, database, on_server=False).rows
    records_s = time.perf_counter() - start
    assert by_record.equals(counted.rows), (by_record, counted.rows)
    timings = {}
    for name, match in (("ceiling", {"inferred_at": {"$gte": window.start, "$lt": window.end}}),
                        ("window", window.mongo_filter())):
        start = time.perf_counter()
        groups = list(collection.aggregate([{"$match": match}, {"$group": {"_id": "$producer_id", "n": {"$sum": 1}}}]))
        timings[name] = time.perf_counter() - start
        assert sum(g["n"] for g in groups) == TABLE_DOCS
    server_s = timings["ceiling"]
    fields = {name: 1 for name in INFERENCE_FIELDS}
    start = time.perf_counter()
    pulled = sum(1 for _ in collection.aggregate([{"$match": window.mongo_filter()}, {"$project": fields}]))
    read_s = time.perf_counter() - start
    assert pulled == TABLE_DOCS
    print(f"error table, {backend} backend: job {seconds:.1f} s, FerretDB $match+$group {server_s:.1f} s "
          f"(ratio {server_s / seconds:.2f}), the same with the job's window filter {timings['window']:.1f} s "
          f"(ratio {timings['window'] / seconds:.2f}); the job counting every record on Spark instead of the "
          f"server's tallies {records_s:.1f} s (ratio {server_s / records_s:.2f}), pymongo's pull of those records "
          f"{read_s:.1f} s, load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    report("iot_error_table", TABLE_DOCS / seconds, TABLE_DOCS / server_s, "records/s", backend=backend,
           seconds=round(seconds, 2), records_path_s=round(records_s, 2), server_group_s=round(server_s, 2),
           server_window_group_s=round(timings["window"], 2), server_read_s=round(read_s, 2),
           documents=TABLE_DOCS)
    collection.database.client.drop_database(database)


def run(stack: LocalStack) -> None:
    pipeline(stack)
    error_table(stack)


if __name__ == "__main__":
    # `python -m benchmarks.iot_pipeline [pipeline | BACKEND=MONGO_URI]`: the error-table benchmark alone, against the
    # benchmark stack's FerretDB or against the Mongo-wire server named (e.g. FerretDB on another backend). One
    # server per process: a second URI in the same Spark session still read the first server's collection.
    import sys
    from types import SimpleNamespace

    from benchmarks.common import running_bench_stack

    if sys.argv[1:] == ["pipeline"]:  # `python -m benchmarks.iot_pipeline pipeline`: the drain figures alone
        with running_bench_stack() as bench:
            pipeline(bench)
    elif len(sys.argv) > 1:
        name, uri = sys.argv[1].split("=", 1)
        error_table(SimpleNamespace(settings=SimpleNamespace(mongo_uri=uri)), name)  # type: ignore[arg-type]
    else:
        with running_bench_stack() as bench:
            error_table(bench)
