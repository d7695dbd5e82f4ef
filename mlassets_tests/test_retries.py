"""Retries for transient faults: a step retry policy with backoff on every asset that talks to a server, run retries
in the project's dagster.yaml."""

from __future__ import annotations

import shutil
from pathlib import Path

from dagster import Backoff, DagsterInstance

from mlassets.automation import TRANSIENT_RETRY
from mlassets.definitions import defs
from mlassets_tests.conftest import REPO

SERVERS = {"kafka", "mongo", "lake", "spark"}
NOT_RETRIED = {"sample_image_messages"}  # a retry would send the simulated images again under a new run id


def test_every_asset_that_talks_to_kafka_mongo_the_lake_or_spark_retries_with_backoff():
    graph = defs.resolve_asset_graph()
    talking = {key.to_user_string() for key in graph.materializable_asset_keys
               if graph.get(key).assets_def.required_resource_keys & SERVERS}
    retried = {key.to_user_string(): graph.get(key).assets_def.op.retry_policy
               for key in graph.materializable_asset_keys if graph.get(key).assets_def.op.retry_policy}
    assert set(retried) == talking - NOT_RETRIED
    assert len(retried) == 20 and all(policy == TRANSIENT_RETRY for policy in retried.values())
    assert TRANSIENT_RETRY.backoff == Backoff.EXPONENTIAL and TRANSIENT_RETRY.max_retries >= 3
    # the model integrity checks read MongoDB too
    checks = [graph.assets_def_for_key(key) for key in graph.asset_check_keys if key.name == "stored_model_intact"]
    assert len(checks) == 2 and all(c.node_def.retry_policy == TRANSIENT_RETRY for c in checks)


def test_the_project_instance_retries_runs_that_failed_as_a_whole(tmp_path: Path):
    shutil.copy(REPO / "dagster.yaml", tmp_path / "dagster.yaml")
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        # a failed step was already retried by its policy: the run is not retried again for it
        assert not instance.run_retries_retry_on_asset_or_op_failure
