"""A Spark standalone cluster on loopback (master + 2 workers): every Spark asset of the main job materialised there
through the CLI and equal to local mode, executors on the shipped Python environment, the SUSY scorer's counts as in
one process, a SIGKILLed worker survived."""

import functools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from mlassets.datasets.susy import FEATURES
from mlassets.partitions import SUSY_CHUNKS
from mlassets.resources import LakeResource, MongoResource, SparkResource
from mlassets.stack import StackSettings
from mlassets.stack import executor_env
from mlassets.stack.spark_cluster import SparkClusterSettings, SparkStandaloneCluster
from mlassets_tests.assets_tests.iot_tests.test_error_tables import RECORDS
from mlassets_tests.conftest import REPO, dagster_cli

PARTITION = "2026-11-20"


@pytest.fixture(scope="module")
def cluster(stack: StackSettings) -> Iterator[SparkStandaloneCluster]:
    spark = SparkStandaloneCluster(stack, SparkClusterSettings.from_env())
    spark.up()
    yield spark
    spark.down()


def _materialize(test_env: dict[str, str], master: str, lake: Path, home: Path, select: str, config: dict,
                 *args: str) -> None:
    """The CLI path users take, in its own process (one Spark driver per process)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **test_env, "MLASSETS_SPARK_MASTER": master, "MLASSETS_LAKE_ROOT": str(lake),
           "DAGSTER_HOME": str(home)}
    result = dagster_cli(["asset", "materialize", "-m", "mlassets.definitions", "--select", select,
                          "--config-json", json.dumps(config), *args], env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_cluster_results_are_identical_to_local_mode(cluster: SparkStandaloneCluster, stack: StackSettings,
                                                     test_env: dict[str, str], unique: str, tmp_path: Path) -> None:
    assert cluster.alive_workers() == 2
    database = f"image_database_{unique}"
    MongoResource(uri=stack.mongo_uri).client()[database]["inferences"].insert_many([dict(r) for r in RECORDS])
    apps_before = len(cluster.state()["completedapps"])

    tables = "producer_error_counts,class_accuracy"
    config = {"ops": {name: {"config": {"database": database}} for name in tables.split(",")}}
    _materialize(test_env, cluster.settings.master_url, tmp_path / "cluster", tmp_path / "home-cluster", tables,
                 config, "--partition", PARTITION)
    state = cluster.state()
    assert len(state["completedapps"]) == apps_before + 2  # each table's driver really ran its job on the cluster
    assert state["completedapps"][0]["cores"] == 2  # one executor on each worker
    _materialize(test_env, "local[2]", tmp_path / "local", tmp_path / "home-local", tables, config,
                 "--partition", PARTITION)

    for name in tables.split(","):
        on_cluster = LakeResource(root=str(tmp_path / "cluster")).read_parquet(name, PARTITION)
        local = LakeResource(root=str(tmp_path / "local")).read_parquet(name, PARTITION)
        assert len(local) >= 2
        assert on_cluster.equals(local), (name, on_cluster, local)
        csv = Path(name) / f"{PARTITION}.csv"
        assert (tmp_path / "cluster" / csv).read_bytes() == (tmp_path / "local" / csv).read_bytes()


def test_up_is_idempotent_and_a_taken_port_is_named(cluster: SparkStandaloneCluster, stack: StackSettings) -> None:
    assert cluster.up() == []
    clash = SparkStandaloneCluster(stack.__class__(**{**stack.__dict__, "run_dir": stack.run_dir / "other"}),
                                   cluster.settings)
    with pytest.raises(Exception, match=f"port {cluster.settings.master_port} is already in use"):
        clash.up()


def test_fruit_features_on_the_cluster_equal_local_mode(cluster: SparkStandaloneCluster, test_env: dict[str, str],
                                                       tmp_path: Path) -> None:
    config = {"ops": {"fruit_images": {"config": {"max_images_per_class": 2, "max_classes": 3}},
                      "fruit_features": {"config": {"weights": "none", "images_per_partition": 2, "batch_size": 4}}}}
    apps_before = {a["id"] for a in cluster.state()["completedapps"]}
    _materialize(test_env, cluster.settings.master_url, tmp_path / "cluster", tmp_path / "home-cluster",
                 "fruit_images,fruit_features,fruit_pca", config)
    apps = [a["id"] for a in cluster.state()["completedapps"] if a["id"] not in apps_before]
    assert apps, "no application ran on the cluster"
    # fruit_features' executors ran Keras from the TensorFlow archive; fruit_pca's got the lean one, which lacks it
    site = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    unpacked = {app: list(cluster.run_dir.glob(f"spark-worker-*-work/{app}/*/environment")) for app in apps}
    with_tensorflow = [app for app, envs in unpacked.items() if envs and all((e / site / "tensorflow").is_dir()
                                                                              for e in envs)]
    assert len(apps) == 2 and len(with_tensorflow) == 1, unpacked
    _materialize(test_env, "local[2]", tmp_path / "local", tmp_path / "home-local",
                 "fruit_images,fruit_features,fruit_pca", config)

    def by_image(lake: Path, asset: str = "fruit_features") -> pd.DataFrame:
        frame = LakeResource(root=str(lake)).read_parquet(asset)
        frame.index = frame["label"] + "/" + frame["path"].str.rsplit("/", n=1).str[-1]
        return frame.sort_index()

    on_cluster, local = by_image(tmp_path / "cluster"), by_image(tmp_path / "local")
    assert len(local) == 6 and on_cluster.index.equals(local.index)
    assert on_cluster["label"].equals(local["label"])
    np.testing.assert_allclose(np.stack(on_cluster["features"].to_list()), np.stack(local["features"].to_list()),
                               rtol=1e-5, atol=1e-5)
    pca_cluster, pca_local = by_image(tmp_path / "cluster", "fruit_pca"), by_image(tmp_path / "local", "fruit_pca")
    assert pca_cluster.index.equals(pca_local.index)
    # the same components up to each one's sign (an SVD's sign is arbitrary)
    np.testing.assert_allclose(np.abs(np.stack(pca_cluster["pca_features"].to_list())),
                               np.abs(np.stack(pca_local["pca_features"].to_list())), rtol=1e-4, atol=1e-4)


# A driver of its own (this process's session is lean): xgboost.spark trains with barrier tasks on the executors.
XGBOOST_DRIVER = """
import json, sys
import numpy as np, pandas as pd
from xgboost.spark import SparkXGBRegressor
from mlassets.resources import SparkResource
from mlassets.stack.executor_env import XGBOOST

spark = SparkResource(spark_config={"spark.master": sys.argv[1], "spark.driver.host": "127.0.0.1",
                                    "spark.driver.bindAddress": "127.0.0.1", "spark.ui.enabled": "false",
                                    "spark.executor.memory": "768m"}).session_for(XGBOOST)
rng = np.random.default_rng(19)
x = rng.normal(size=(4000, 4))
y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(scale=0.1, size=len(x))
rows = spark.createDataFrame(pd.DataFrame({"id": np.arange(len(x)), "features": list(x), "y": y})).repartition(2, "id")
model = SparkXGBRegressor(features_col="features", label_col="y", num_workers=2, n_estimators=20, max_depth=3,
                          random_state=0).fit(rows)
predicted = model.transform(rows).select("id", "prediction").toPandas().sort_values("id")
print(json.dumps(predicted["prediction"].tolist()))
spark.stop()
"""


def test_xgboost_spark_trains_on_the_cluster_with_the_xgboost_environment(cluster: SparkStandaloneCluster) -> None:
    def predictions(master: str) -> np.ndarray:
        result = subprocess.run([sys.executable, "-c", XGBOOST_DRIVER, master], cwd=REPO, capture_output=True,
                                text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return np.array(json.loads(result.stdout.strip().splitlines()[-1]))

    on_cluster, local = predictions(cluster.settings.master_url), predictions("local[2]")
    assert len(on_cluster) == 4000
    np.testing.assert_allclose(on_cluster, local, rtol=1e-5, atol=1e-5)


WEATHER_SPARK_ASSETS = ("weather_observations,weather_features,humidity_xgboost_search,humidity_model_standalone,"
                        "humidity_model_spark,humidity_model_xgboost,humidity_model_xgboost_spark,humidity_predictions,"
                        "string_count_benchmark")


def test_the_main_jobs_weather_spark_assets_run_on_the_cluster(cluster: SparkStandaloneCluster,
                                                              test_env: dict[str, str], tmp_path: Path) -> None:
    """Spark ML's forest, xgboost.spark (on the xgboost archive) and the string count, each in its own step and
    driver as the main job runs them, on small settings."""
    config = {"ops": {
        "humidity_xgboost_search": {"config": {"trials": 2, "max_seconds": 20, "folds": 1, "max_rounds": 100,
                                               "early_stopping_rounds": 10}},
        "humidity_model_standalone": {"config": {"n_trees": 4, "max_depth": 4}},
        "humidity_model_spark": {"config": {"n_trees": 4, "max_depth": 4}},
        "string_count_benchmark": {"config": {"n_keys": 200_000, "chunk": 50_000}}}}
    apps_before = {a["id"] for a in cluster.state()["completedapps"]}
    _materialize(test_env, cluster.settings.master_url, tmp_path / "lake", tmp_path / "home", WEATHER_SPARK_ASSETS,
                 config)
    apps = [a for a in cluster.state()["completedapps"] if a["id"] not in apps_before]
    assert len(apps) >= 4, apps  # one driver per Spark step

    lake = LakeResource(root=str(tmp_path / "lake"))
    counts = lake.read_parquet("string_count_benchmark")
    assert counts["count"].sum() == 200_000 and counts["key"].is_unique
    for name in ("humidity_model_spark", "humidity_model_xgboost_spark"):
        record = lake.read_parquet(name)
        assert len(record) == 1 and np.isfinite(record["validation_mse"]).all() and record["train_rows"].iloc[0] > 1000
    predictions = lake.read_parquet("humidity_predictions")
    assert len(predictions) > 0 and predictions.select_dtypes("number").notna().any().all()


SUSY_RANGE = f"{SUSY_CHUNKS.get_partition_keys()[0]}...{SUSY_CHUNKS.get_partition_keys()[-1]}"


def test_susy_evaluation_on_the_cluster_equals_local_mode(cluster: SparkStandaloneCluster, test_env: dict[str, str],
                                                         unique: str, tmp_path: Path) -> None:
    """The SUSY group's Spark asset over every chunk in one run, as the main job runs it: the model and chunks from
    one local run upstream, then scored on the cluster by row-group tasks (the default reader: pyarrow on the
    executors, the NumPy scorer) and in local mode by Spark's own reader and mapInPandas, with equal results."""
    lake, home = tmp_path / "lake", tmp_path / "home"
    _materialize(test_env, "local[2]", lake, home, "susy_dataset,susy_train_topic,susy_model",
                 {"ops": {"susy_train_topic": {"config": {"topic": f"trainData-{unique}"}},
                          "susy_model": {"config": {"epochs": 2}}}})
    _materialize(test_env, "local[2]", lake, home, "susy_test_scaled",
                 {"ops": {"susy_test_scaled": {"config": {"rows_per_chunk": 4000, "row_group_rows": 3000}}}},
                 "--partition-range", SUSY_RANGE)
    config = {"ops": {"susy_evaluation": {"config": {"arrow_batch_rows": 1500}}}}

    def evaluation() -> pd.DataFrame:
        reader = LakeResource(root=str(lake))
        return pd.concat([reader.read_parquet("susy_evaluation", key) for key in SUSY_CHUNKS.get_partition_keys()],
                         ignore_index=True)

    apps_before = {a["id"] for a in cluster.state()["completedapps"]}
    _materialize(test_env, cluster.settings.master_url, lake, home, "susy_evaluation", config,
                 "--partition-range", SUSY_RANGE)
    on_cluster = evaluation()
    apps = [a["id"] for a in cluster.state()["completedapps"] if a["id"] not in apps_before]
    assert len(apps) == 1, apps  # one run over the four chunks, one driver
    # the executors unpacked the lean archive: the NumPy scorer needs no TensorFlow
    environments = list(cluster.run_dir.glob(f"spark-worker-*-work/{apps[0]}/*/environment"))
    site = f"lib/python{sys.version_info[0]}.{sys.version_info[1]}/site-packages"
    assert environments and all((e / site / "numpy").is_dir() and not (e / site / "tensorflow").exists()
                                for e in environments), environments
    spark_reader = {"ops": {"susy_evaluation": {"config": {"arrow_batch_rows": 1500, "reader": "spark"}}}}
    _materialize(test_env, "local[2]", lake, home, "susy_evaluation", spark_reader, "--partition-range", SUSY_RANGE)
    local = evaluation()

    counts = ["chunk", "model_id", "rows", "tp", "fp", "tn", "fn"]
    assert local["rows"].tolist() == [4000] * 4 and local["model_id"].nunique() == 1
    assert on_cluster[counts].equals(local[counts]), (on_cluster[counts], local[counts])
    for column in ("positive_hist", "negative_hist"):
        np.testing.assert_array_equal(np.stack(on_cluster[column].to_list()), np.stack(local[column].to_list()))
    np.testing.assert_allclose(on_cluster[["accuracy", "auc"]], local[["accuracy", "auc"]], rtol=1e-9, atol=1e-12)


@pytest.fixture(scope="module")
def cluster_session(cluster: SparkStandaloneCluster) -> Iterator[SparkSession]:
    """A session on the cluster through SparkResource, which ships the packed executor environment itself; it holds
    every core until the module ends, so the tests that start other drivers come before its first use."""
    resource = SparkResource(spark_config={
        "spark.master": cluster.settings.master_url, "spark.app.name": "mlassets-cluster-test",
        "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1", "spark.ui.enabled": "false",
        "spark.executor.memory": "768m", "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.shuffle.partitions": "4"})
    assert resource.ships_environment()
    local = SparkSession.getActiveSession()
    if local is not None:
        local.stop()  # one Spark context per process: the suite's local session gives way (its fixture restarts it)
    session = resource.spark_session
    deadline = time.monotonic() + 120  # the executors unpack the archive before they register
    while session.sparkContext._jsc.sc().getExecutorMemoryStatus().size() < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
    yield session
    session.stop()


def test_executors_run_the_shipped_environment_not_the_drivers(cluster: SparkStandaloneCluster,
                                                               cluster_session: SparkSession) -> None:
    archive = executor_env.build_archive(executor_env.LEAN)
    assert cluster_session.conf.get("spark.archives") == f"{archive}#environment"

    @F.pandas_udf("string")
    def interpreter(ids: pd.Series) -> pd.Series:
        import importlib.util
        import os
        import sys

        import mlassets
        import pyarrow

        where = {"executable": sys.executable, "prefix": sys.prefix, "pandas": pd.__file__,
                 "pyarrow": pyarrow.__file__, "mlassets": mlassets.__file__, "cwd": os.getcwd(),
                 "tensorflow": "absent" if importlib.util.find_spec("tensorflow") is None else "importable"}
        return pd.Series([json.dumps(where)] * len(ids))

    rows = cluster_session.range(0, 8, numPartitions=8).select(interpreter("id").alias("where")).distinct().collect()
    seen = [json.loads(r["where"]) for r in rows]
    venv = Path(sys.prefix).resolve()
    for where in seen:
        prefix = Path(where["prefix"])
        assert prefix == Path(where["cwd"]) / "environment", where  # the archive unpacked in the executor's dir
        assert prefix.resolve().is_relative_to(cluster.run_dir.resolve()), where  # ... under a worker's work dir
        assert Path(where["executable"]).parent == prefix / "bin", where
        for module in ("pandas", "pyarrow"):
            assert Path(where[module]).is_relative_to(prefix), where
        assert ".zip" in where["mlassets"] and not Path(where["mlassets"]).is_relative_to(REPO), where
        assert not any(Path(where[k]).resolve().is_relative_to(venv) for k in ("executable", "prefix", "pandas"))
        assert where["tensorflow"] == "absent", where  # the lean archive: the NumPy scorer needs no TensorFlow
    assert len({w["cwd"] for w in seen}) == 2, seen  # both workers' executors


def _susy_rows(rows_per_chunk: int, seed: int) -> pd.DataFrame:
    """Raw SUSY-like rows in two chunks: chunk, label and the 18 features."""
    rng = np.random.default_rng(seed)
    n = 2 * rows_per_chunk
    frame = pd.DataFrame(rng.normal(size=(n, len(FEATURES))).astype(np.float32), columns=list(FEATURES))
    frame.insert(0, "label", (frame[FEATURES[0]] + rng.normal(scale=0.5, size=n) > 0).astype(np.float64))
    frame.insert(0, "chunk", np.repeat(["chunk-000", "chunk-001"], rows_per_chunk))
    return frame


def _counts(summaries: pd.DataFrame) -> pd.DataFrame:
    """Per chunk: rows, confusion counts and the summed score histograms."""
    grouped = summaries.groupby("chunk")
    counts = grouped[["rows", "tp", "fp", "tn", "fn"]].sum()
    for column in ("positive_hist", "negative_hist"):
        counts[column] = grouped[column].apply(lambda hists: np.sum(np.stack(hists.to_list()), axis=0).tolist())
    return counts.sort_index()


def test_susy_scoring_on_the_cluster_counts_as_in_one_process(cluster_session: SparkSession) -> None:
    from mlassets.models.serialization import model_sha256, model_to_bytes
    from mlassets.models.susy_batch_scoring import SCORE_SCHEMA, score_frames
    from mlassets.models.susy_mlp import build_susy_mlp
    from mlassets.models.susy_scorer import StandardScaler

    frame = _susy_rows(20_000, seed=19)
    architecture, blob = model_to_bytes(build_susy_mlp(), StandardScaler.fit(frame[list(FEATURES)].to_numpy()).extras())
    model = (architecture, blob, model_sha256(architecture, blob))
    local = _counts(pd.concat(score_frames(iter([frame]), "susy_mlp:cluster", _Value(model), threads=0, bins=64)))

    payload = cluster_session.sparkContext.broadcast(model)
    score = functools.partial(score_frames, model_id="susy_mlp:cluster", broadcast=payload, threads=1, bins=64)
    summaries = (cluster_session.createDataFrame(frame).repartition(4)
                 .mapInPandas(score, SCORE_SCHEMA).toPandas())
    payload.destroy()

    assert set(summaries["engine"]) == {"numpy"}
    assert summaries["worker_pid"].nunique() >= 2
    on_cluster = _counts(summaries)
    assert on_cluster[["rows", "tp", "fp", "tn", "fn"]].equals(local[["rows", "tp", "fp", "tn", "fn"]])
    assert on_cluster["rows"].tolist() == [20_000, 20_000]
    assert on_cluster.equals(local), (on_cluster, local)


class _Value:
    """What a broadcast offers score_frames: the payload as `.value`."""

    def __init__(self, value: object) -> None:
        self.value = value


def test_a_sigkilled_worker_costs_no_result(cluster: SparkStandaloneCluster, cluster_session: SparkSession) -> None:
    def slow_square(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        import time

        for batch in batches:
            time.sleep(1.0)
            yield pd.DataFrame({"id": batch["id"], "square": batch["id"] * batch["id"]})

    numbers = cluster_session.range(0, 4000, numPartitions=16)
    expected = sum(i * i for i in range(4000))
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["sum"] = numbers.mapInPandas(slow_square, "id long, square long").agg(
                F.sum("square").alias("s")).first()["s"]
        except Exception as exc:  # noqa: BLE001 - handed to the test thread
            result["error"] = exc

    tracker = cluster_session.sparkContext.statusTracker()
    job = threading.Thread(target=run)
    job.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _tasks_running_on_both(tracker):
        time.sleep(0.2)
    victim = cluster.workers[0]
    pid = victim.pid()
    assert pid is not None and job.is_alive()
    os.killpg(pid, signal.SIGKILL)  # the worker, its executor and its Python workers: a machine gone
    job.join(timeout=300)
    try:
        assert not job.is_alive(), "the job did not finish after a worker was killed"
        assert "error" not in result, result
        assert result["sum"] == expected
    finally:
        cluster.up()  # a fresh worker in place of the killed one


def _tasks_running_on_both(tracker: object) -> bool:
    """True once the active stage has two tasks running (one per one-core executor)."""
    for stage_id in tracker.getActiveStageIds():
        info = tracker.getStageInfo(stage_id)
        if info is not None and info.numActiveTasks >= 2:
            return True
    return False
