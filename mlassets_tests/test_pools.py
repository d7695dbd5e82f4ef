"""Pools: the Spark-heavy assets share the pool that the project's dagster.yaml limits to one step at a time."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance

from mlassets.automation import SPARK_POOL
from mlassets.definitions import defs
from mlassets_tests.conftest import REPO, dagster_cli
from mlassets_tests.fixtures import pool_defs

SPARK_HEAVY = {"fruit_features", "fruit_pca", "producer_error_counts", "class_accuracy", "susy_evaluation",
               "humidity_model_spark", "humidity_model_xgboost_spark", "humidity_predictions", "string_count_benchmark"}


def test_every_asset_that_starts_spark_is_in_the_spark_pool_and_no_other():
    graph = defs.resolve_asset_graph()
    pooled = {key.to_user_string(): graph.get(key).pools for key in graph.materializable_asset_keys
              if graph.get(key).pools}
    assert pooled == {asset: {SPARK_POOL} for asset in SPARK_HEAVY}
    # The rule behind the list: the assets given the Spark resource, and fruit_pca (its input is a Spark DataFrame).
    with_spark = {key.to_user_string() for key in graph.materializable_asset_keys
                  if "spark" in graph.get(key).assets_def.required_resource_keys}
    assert with_spark | {"fruit_pca"} == SPARK_HEAVY


def test_the_project_instance_runs_one_spark_step_at_a_time_and_the_rest_beside_it(tmp_path: Path):
    """Three independent steps with room for three processes: the two in the pool run one after the other, the
    third runs beside the first."""
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    result = dagster_cli(["asset", "materialize", "--select", "*", "-m", pool_defs.__name__, "--config-json",
                          '{"execution": {"config": {"multiprocess": {"max_concurrent": 3}}}}'], env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        events = [r.event_log_entry for r in instance.get_records_for_run(run.run_id).records]
        assert instance.event_log_storage.get_concurrency_info(SPARK_POOL).slot_count == 1  # Deployment -> Concurrency
    spans: dict[str, list[float]] = {}
    for entry in events:
        if entry.dagster_event and entry.dagster_event.event_type in (DagsterEventType.STEP_START,
                                                                      DagsterEventType.STEP_SUCCESS):
            spans.setdefault(entry.step_key, []).append(entry.timestamp)
    (a_start, a_end), (b_start, b_end) = spans["spark_step_a"], spans["spark_step_b"]
    light_start, light_end = spans["light_step"]
    assert a_end <= b_start or b_end <= a_start, spans  # never together
    first_start, first_end = min((a_start, a_end), (b_start, b_end))
    assert light_start < first_end and first_start < light_end, spans  # beside one of them
    assert any(f"blocked by limit for pool {SPARK_POOL}" in (e.user_message or "") for e in events)
