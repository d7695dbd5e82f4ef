"""SUSY: trainData ingest rows/s vs Kafka's ProducerPerformance, and susy_evaluation rows/s vs bare Keras predict.

Sizes: BENCH_SUSY_INGEST_ROWS (default 500,000, produced with 1 and with BENCH_SUSY_INGEST_PROCESSES producer
processes, default one per CPU, 2 to 4; `python -m benchmarks.susy_throughput ingest` runs the ingest alone),
BENCH_SUSY_EVAL_ROWS (comma-separated totals over the 4 chunks, default "5000000,20000000"), BENCH_SUSY_READERS
(susy_evaluation's `reader` settings to compare, default "arrow,spark"; `python -m benchmarks.susy_throughput
evaluation` runs the scoring alone). Each evaluation size and reader runs in a fresh process whose peak RSS
(driver, JVM and Python workers summed, sampled every 0.2 s) is reported; its chunks are written before the timed
scoring job. The model is trained once, in this process; the ceiling is the best of 3
runs just before and 3 just after each size, so it sees the machine load the scoring saw.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid

import numpy as np
import pandas as pd

from mlassets.datasets.susy import FEATURES, find_susy, read_susy
from mlassets.names import SUSY_DATABASE, SUSY_MODEL_COLLECTION, SUSY_MODEL_NAME
from mlassets.resources import KafkaResource
from mlassets.stack import LocalStack
from mlassets.streaming.susy_messages import encode_train_rows, ensure_topic, produce_train_rows
from benchmarks.common import REPO, PeakTreeRss, report
from mlassets.paths import sample_data_dir

DATA = sample_data_dir()
INGEST_ROWS = int(os.environ.get("BENCH_SUSY_INGEST_ROWS", 500_000))
EVAL_ROWS = [int(n) for n in os.environ.get("BENCH_SUSY_EVAL_ROWS", "5000000,20000000").split(",")]
ARROW_BATCH = int(os.environ.get("BENCH_SUSY_ARROW_BATCH", 65_536))
INGEST_PROCESSES = int(os.environ.get("BENCH_SUSY_INGEST_PROCESSES", max(2, min(4, os.cpu_count() or 1))))
READERS = os.environ.get("BENCH_SUSY_READERS", "arrow,spark").split(",")
CEILING_ROWS = 2_000_000


def _sample() -> tuple[np.ndarray, np.ndarray]:
    frame = read_susy(find_susy(DATA))
    return frame["label"].to_numpy(), frame[list(FEATURES)].to_numpy()


def _producer_performance(stack: LocalStack, kafka: KafkaResource, size: int) -> float:
    """Rows/s of Kafka's own ProducerPerformance, INGEST_ROWS records of size bytes, to a fresh 4-partition topic."""
    java_topic = f"trainData-java-{uuid.uuid4().hex[:8]}"
    ensure_topic(kafka, java_topic, 4)
    out = subprocess.run(
        [*stack.kafka._java("org.apache.kafka.tools.ProducerPerformance"), "--topic", java_topic,
         "--num-records", str(INGEST_ROWS), "--record-size", str(size), "--throughput", "-1", "--producer-props",
         f"bootstrap.servers={stack.settings.kafka_bootstrap}", "acks=all", "enable.idempotence=true",
         "linger.ms=20", "batch.size=262144"],
        capture_output=True, text=True, check=True,
    ).stdout
    return float(re.findall(r"([\d.]+) records/sec", out)[-1])


def ingest(stack: LocalStack) -> None:
    """Rows/s of produce_train_rows with 1 and with N producer processes against ProducerPerformance (same sizes).

    The ceiling is the best of one run before and one after the two ingests; the encoding alone (no Kafka) is timed
    too, to say how much of one process's time is the text formatting.
    """
    kafka = KafkaResource(bootstrap_servers=stack.settings.kafka_bootstrap)
    labels, features = _sample()
    reps = -(-INGEST_ROWS // len(labels))
    labels, features = np.tile(labels, reps)[:INGEST_ROWS], np.tile(features, (reps, 1))[:INGEST_ROWS]
    size = int(np.mean([len(v) for _, v in encode_train_rows(labels[:1000], features[:1000])]))
    start = time.perf_counter()
    encode_train_rows(labels, features)
    encode_only = INGEST_ROWS / (time.perf_counter() - start)
    ceilings = [_producer_performance(stack, kafka, size)]
    results = {}
    for processes in (1, INGEST_PROCESSES):
        topic = f"trainData-bench-{uuid.uuid4().hex[:8]}"
        ensure_topic(kafka, topic, 4)
        results[processes] = produce_train_rows(kafka, topic, labels, features, partitions=4, processes=processes)
    ceilings.append(_producer_performance(stack, kafka, size))
    for processes, result in results.items():
        report(f"susy_ingest_trainData_{processes}_process{'es' if processes > 1 else ''}",
               result.rows / result.seconds, max(ceilings), "rows/s", rows=result.rows, processes=result.processes,
               client=result.client,
               seconds=round(result.seconds, 2), value_bytes=size, partitions=4,
               encode_only_rows_per_s=round(encode_only), ceiling_runs=[round(c) for c in ceilings],
               includes="csv encoding of the features + idempotent batched produce (+ process start and row hand-off "
                        "when processes > 1)",
               ceiling_tool="best of 2 (before, after): org.apache.kafka.tools.ProducerPerformance, same record "
                            "count and size, acks=all, idempotent")


def _split() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The sample's train and test rows, split as susy_dataset splits them."""
    from mlassets.assets.susy.dataset import split_rows

    frame = read_susy(find_susy(DATA))
    frame.insert(0, "row_id", np.arange(len(frame), dtype=np.int64))
    frame.insert(1, "split", split_rows(len(frame), 0.2, 20140101))
    return frame[frame["split"] == "train"], frame[frame["split"] == "test"].reset_index(drop=True)


def store_model(mongo_uri: str) -> str:
    """Train the SUSY MLP on the sample's train rows (2 epochs) and save it in the model store; its model id."""
    import keras

    from mlassets.models.susy_mlp import build_susy_mlp
    from mlassets.models.susy_scorer import StandardScaler
    from mlassets.resources import MongoResource

    train, _ = _split()
    scaler = StandardScaler.fit(train[list(FEATURES)].to_numpy())
    keras.utils.set_random_seed(0)
    model = build_susy_mlp()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(scaler.transform(train[list(FEATURES)].to_numpy()), train["label"].to_numpy(np.float32), epochs=2,
              batch_size=64, verbose=0)
    store = MongoResource(uri=mongo_uri).model_store(SUSY_DATABASE, SUSY_MODEL_COLLECTION)
    return store.save(SUSY_MODEL_NAME, model, extras=scaler.extras(), metadata={"benchmark": True}).model_id


def _child_run(rows: int, reader: str, model_id: str, mongo_uri: str) -> dict:
    """One evaluation size and reader in a fresh process; its result lines plus the peak RSS of its process tree."""
    env = {**os.environ, "BENCH_MONGO_URI": mongo_uri}
    child = subprocess.Popen([sys.executable, "-m", "benchmarks.susy_throughput", "child", str(rows), reader,
                              model_id], env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    with PeakTreeRss(child.pid) as peak:
        out, _ = child.communicate()
    if child.returncode:
        raise RuntimeError(f"evaluation child for {rows} rows ({reader}) failed (exit {child.returncode})")
    runs = json.loads([l for l in out.splitlines() if l.startswith("{")][-1])["runs"]
    return {"runs": runs, **peak.mib()}


def evaluation(stack: LocalStack) -> None:
    """Each size and reader in a fresh process (peak RSS sampled), with the bare Keras ceiling measured just before
    and after."""
    model_id = store_model(stack.settings.mongo_uri)
    ceiling = KerasCeiling(model_id, stack.settings.mongo_uri)
    for rows in EVAL_ROWS:
        for reader in READERS:
            _report_evaluation(rows, reader, model_id, stack.settings.mongo_uri, ceiling)


def _report_evaluation(rows: int, reader: str, model_id: str, mongo_uri: str, ceiling: "KerasCeiling") -> None:
    """One size and reader: the ceiling's runs before, the child's cold and warm runs, the ceiling's runs after."""
    before = ceiling.runs()
    child = _child_run(rows, reader, model_id, mongo_uri)
    after = ceiling.runs()
    for line in child["runs"]:
        report(f"susy_evaluation_scoring_{reader}_{line['run']}", line["rows_per_s"], max(before + after), "rows/s",
               reader=reader, tasks=line["tasks"], rows=line["rows"], seconds=line["seconds"],
               peak_rss_mib=child["peak_rss_mib"], peak_rss_split_mib=child["peak_rss_split_mib"],
               arrow_batch_rows=ARROW_BATCH,
               spark_master=line["spark_master"], accuracy=line["accuracy"], auc=line["auc"],
               max_model_loads_per_worker=line["max_model_loads_per_worker"],
               scoring_engine=line["scoring_engine"],
               ceiling_runs={"before": [round(c) for c in before], "after": [round(c) for c in after]},
               ceiling_tool=f"best of {len(before + after)}: keras model.predict(batch_size={ARROW_BATCH}) "
                            f"with the scaling, TensorFlow's default threads, on a {CEILING_ROWS:,}-row "
                            "in-memory float32 array, the same model (warm: imported, built and traced), "
                            "measured just before and just after the scoring run",
               run_is="cold: the asset's first run in a fresh process, as each Dagster step runs; warm: a "
                      "second run in the same process (session, JIT-compiled code and Python workers reused)",
               rss_of="driver + Spark JVM + Python workers, summed over both runs, sampled every 0.2 s")


class KerasCeiling:
    """Bare Keras predict (scaling included) of the stored model on an in-memory array of the sample's features."""

    def __init__(self, model_id: str, mongo_uri: str) -> None:
        from mlassets.models.susy_scorer import SusyScorer
        from mlassets.resources import MongoResource

        store = MongoResource(uri=mongo_uri).model_store(SUSY_DATABASE, SUSY_MODEL_COLLECTION)
        self.scorer = SusyScorer.from_bytes(*store.load_bytes(model_id)[:2])
        _, features = _sample()
        self.array = np.tile(features, (-(-CEILING_ROWS // len(features)), 1))[:CEILING_ROWS]
        self.scorer.model.predict(self.scorer.scaler.transform(self.array[:ARROW_BATCH]), batch_size=ARROW_BATCH,
                                  verbose=0)

    def runs(self, repeats: int = 3) -> list[float]:
        """Rows/s of each repeat, TensorFlow's default threads."""
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            self.scorer.model.predict(self.scorer.scaler.transform(self.array), batch_size=ARROW_BATCH, verbose=0)
            rates.append(CEILING_ROWS / (time.perf_counter() - start))
        return rates


def child(rows: int, reader: str, model_id: str) -> None:
    """Write the chunks, then materialise susy_evaluation over every chunk with the stored model (timed inside)."""
    from dagster import AssetKey, instance_for_test, materialize

    from mlassets.assets.susy import susy_dataset, susy_evaluation, susy_model, susy_test_scaled, susy_train_topic
    from mlassets.assets.susy.scaled import write_chunk
    from mlassets.environments import load_environment
    from mlassets.partitions import SUSY_CHUNKS
    from mlassets.resources import LakeParquetIOManager, LakeResource, MongoResource

    _, test = _split()
    mongo = MongoResource(uri=os.environ["BENCH_MONGO_URI"])
    with tempfile.TemporaryDirectory(dir=REPO / ".mlassets") as tmp:
        lake = LakeResource(root=tmp)
        keys = SUSY_CHUNKS.get_partition_keys()
        for i, key in enumerate(keys):
            write_chunk(lake, test, key, rows // len(keys), 15 + i, 1_000_000)
        lake.write_parquet(pd.DataFrame([{"model_id": model_id}]), "susy_model")
        os.environ.setdefault("MLASSETS_SPARK_MASTER", "local[2]")
        environment = load_environment("local")
        spark = environment["spark"]
        resources = {**environment, "lake": lake, "mongo": mongo,
                     "io_manager": LakeParquetIOManager(lake=lake, spark=spark)}
        lines = []
        with instance_for_test() as instance:
            # twice in this process: the first run is what a fresh step pays (the JVM's first Python job, Python
            # workers started, the model loaded); the second reuses the session, its JIT-compiled code and workers
            for run_name in ("cold", "warm"):
                result = materialize(
                    [susy_dataset, susy_train_topic, susy_model, susy_test_scaled, susy_evaluation],
                    selection=[susy_evaluation], resources=resources, instance=instance,
                    tags={"dagster/asset_partition_range_start": keys[0],
                          "dagster/asset_partition_range_end": keys[-1]},
                    run_config={"ops": {"susy_evaluation": {"config": {"arrow_batch_rows": ARROW_BATCH,
                                                                       "reader": reader}}}},
                )
                assert result.success
                metadata = instance.get_latest_materialization_event(
                    AssetKey("susy_evaluation")).asset_materialization.metadata
                lines.append({"run": run_name, "rows": metadata["rows_scored"].value,
                              "rows_per_s": metadata["rows_per_s"].value, "seconds": metadata["seconds"].value,
                              "accuracy": metadata["accuracy"].value, "auc": metadata["auc"].value,
                              "model_id": model_id,
                              "max_model_loads_per_worker": metadata["max_model_loads_per_worker"].value,
                              "scoring_engine": metadata["scoring_engine"].value,
                              "tasks": metadata["tasks"].value,
                              "spark_master": os.environ["MLASSETS_SPARK_MASTER"]})
        print(json.dumps({"runs": lines}), flush=True)


def run(stack: LocalStack) -> None:
    """Both SUSY benchmarks on the benchmark stack."""
    ingest(stack)
    evaluation(stack)


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    child(int(sys.argv[2]), sys.argv[3], sys.argv[4])
elif __name__ == "__main__" and sys.argv[1:2] == ["ingest"]:  # the ingest alone, on the benchmark stack
    from benchmarks.common import running_bench_stack

    with running_bench_stack() as _stack:
        ingest(_stack)
elif __name__ == "__main__" and sys.argv[1:2] == ["evaluation"]:  # the scoring alone
    from benchmarks.common import running_bench_stack

    with running_bench_stack() as _stack:
        evaluation(_stack)
