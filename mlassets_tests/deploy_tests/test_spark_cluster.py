"""A Spark standalone cluster on loopback (master + 2 workers) computes producer_error_counts exactly as local mode."""

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlassets.resources import LakeResource, MongoResource
from mlassets.stack import StackSettings
from mlassets.stack.spark_cluster import SparkClusterSettings, SparkStandaloneCluster
from mlassets_tests.assets_tests.test_iot_error_tables import RECORDS
from mlassets_tests.conftest import dagster_cli

PARTITION = "2026-11-20"


@pytest.fixture(scope="module")
def cluster(stack: StackSettings) -> Iterator[SparkStandaloneCluster]:
    spark = SparkStandaloneCluster(stack, SparkClusterSettings.from_env())
    spark.up()
    yield spark
    spark.down()


def _materialize(test_env: dict[str, str], master: str, database: str, lake: Path, home: Path) -> None:
    """The CLI path users take, in its own process (one Spark driver per process)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **test_env, "MLASSETS_SPARK_MASTER": master, "MLASSETS_LAKE_ROOT": str(lake),
           "DAGSTER_HOME": str(home), "PYSPARK_PYTHON": sys.executable}
    config = {"ops": {"producer_error_counts": {"config": {"database": database}}}}
    result = dagster_cli(["asset", "materialize", "-m", "mlassets.definitions", "--select", "producer_error_counts",
                          "--partition", PARTITION, "--config-json", json.dumps(config)], env, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_cluster_results_are_identical_to_local_mode(cluster: SparkStandaloneCluster, stack: StackSettings,
                                                     test_env: dict[str, str], unique: str, tmp_path: Path) -> None:
    assert cluster.alive_workers() == 2
    database = f"image_database_{unique}"
    MongoResource(uri=stack.mongo_uri).client()[database]["inferences"].insert_many([dict(r) for r in RECORDS])
    apps_before = len(cluster.state()["completedapps"])

    _materialize(test_env, cluster.settings.master_url, database, tmp_path / "cluster", tmp_path / "home-cluster")
    state = cluster.state()
    assert len(state["completedapps"]) == apps_before + 1  # the driver really ran its job on the cluster
    assert state["completedapps"][0]["cores"] == 2  # one executor on each worker
    _materialize(test_env, "local[2]", database, tmp_path / "local", tmp_path / "home-local")

    on_cluster = LakeResource(root=str(tmp_path / "cluster")).read_parquet("producer_error_counts", PARTITION)
    local = LakeResource(root=str(tmp_path / "local")).read_parquet("producer_error_counts", PARTITION)
    assert len(local) == 2
    assert on_cluster.equals(local), (on_cluster, local)
    csv = Path("producer_error_counts") / f"{PARTITION}.csv"
    assert (tmp_path / "cluster" / csv).read_bytes() == (tmp_path / "local" / csv).read_bytes()


def test_up_is_idempotent_and_a_taken_port_is_named(cluster: SparkStandaloneCluster, stack: StackSettings) -> None:
    assert cluster.up() == []
    clash = SparkStandaloneCluster(stack.__class__(**{**stack.__dict__, "run_dir": stack.run_dir / "other"}),
                                   cluster.settings)
    with pytest.raises(Exception, match=f"port {cluster.settings.master_port} is already in use"):
        clash.up()
