"""The `dg` CLI from the project root (pyproject.toml's [tool.dg]): it loads mlassets.definitions, lists the same
graph, launches one partition, and prints no deprecation or supersession warning. No server is needed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from mlassets_tests.conftest import OUTDATED, REPO, dagster_cli, dg_environ


def dg(args: list[str], env: dict[str, str], timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the venv's `dg` from the project root, capturing its output."""
    return subprocess.run([str(Path(sys.executable).with_name("dg")), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def assert_succeeded_without_outdated_warnings(result: subprocess.CompletedProcess) -> None:
    text = output(result)
    assert result.returncode == 0, text[-4000:]
    assert not OUTDATED.search(text), "\n".join(line for line in text.splitlines() if OUTDATED.search(line))


@pytest.fixture(scope="module")
def dg_env(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The local environment on the shared data, a fresh lake and a fresh instance (the project's dagster.yaml)."""
    root = tmp_path_factory.mktemp("dg")
    home = root / "home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    return {**dg_environ(), "MLASSETS_ENV": "local", "MLASSETS_DATA_DIR": str(data_dir),
            "MLASSETS_LAKE_ROOT": str(root / "lake"), "DAGSTER_HOME": str(home)}


def test_dg_check_defs_loads_the_code_location(dg_env: dict[str, str]) -> None:
    result = dg(["check", "defs"], dg_env)
    assert_succeeded_without_outdated_warnings(result)
    assert "All definitions loaded successfully" in output(result)


def test_dg_list_defs_lists_the_graph_of_mlassets_definitions(dg_env: dict[str, str]) -> None:
    import json

    from mlassets.definitions import defs

    result = dg(["list", "defs", "--json"], dg_env)
    assert_succeeded_without_outdated_warnings(result)
    listed = json.loads(result.stdout)
    graph = defs.resolve_asset_graph()
    assert {a["asset_key"] for a in listed["assets"]} == {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert {c["key"] for c in listed["asset_checks"]} == {k.to_user_string() for k in graph.asset_check_keys}
    assert {j["name"] for j in listed["jobs"]} == {"iot_daily_tables_job"}
    assert {"image_data_lag", "trainData_new_rows"} <= {s["name"] for s in listed["sensors"]}


def test_dg_launch_materializes_exactly_the_partition_asked_for(dg_env: dict[str, str]) -> None:
    result = dg(["launch", "--assets", "susy_dataset,susy_test_scaled", "--partition", "chunk-01"], dg_env)
    assert_succeeded_without_outdated_warnings(result)

    with DagsterInstance.from_config(dg_env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs(RunsFilter(tags={"dagster/partition": "chunk-01"}))
        assert run.status == DagsterRunStatus.SUCCESS
        assert instance.get_materialized_partitions(AssetKey("susy_test_scaled")) == {"chunk-01"}
        assert instance.get_latest_materialization_event(AssetKey("susy_dataset")).run_id == run.run_id
    lake = Path(dg_env["MLASSETS_LAKE_ROOT"])
    assert sorted(p.name for p in (lake / "susy_test_scaled").iterdir()) == ["chunk-01"]
    chunk = pd.read_parquet(lake / "susy_test_scaled" / "chunk-01")
    assert len(chunk) == 20_000 and set(chunk["chunk"]) == {"chunk-01"}


def test_dg_launch_runs_a_partition_range_in_one_run(dg_env: dict[str, str]) -> None:
    """The README's backfill command: `--partition-range` of a single-run asset is one run over the whole range."""
    assert_succeeded_without_outdated_warnings(dg(["launch", "--assets", "susy_dataset"], dg_env))
    result = dg(["launch", "--assets", "susy_test_scaled", "--partition-range", "chunk-02...chunk-03"], dg_env)
    assert_succeeded_without_outdated_warnings(result)

    with DagsterInstance.from_config(dg_env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs(RunsFilter(tags={"dagster/asset_partition_range_start": "chunk-02"}))
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.tags["dagster/asset_partition_range_end"] == "chunk-03"
        assert {"chunk-02", "chunk-03"} <= instance.get_materialized_partitions(AssetKey("susy_test_scaled"))
    lake = Path(dg_env["MLASSETS_LAKE_ROOT"]) / "susy_test_scaled"
    assert {"chunk-02", "chunk-03"} <= {p.name for p in lake.iterdir()}


def test_the_superseded_dagster_command_is_what_the_warning_check_catches(dg_env: dict[str, str]) -> None:
    """`dagster definitions validate` (kept in the README and CI) prints Dagster's SupersessionWarning naming
    `dg check defs`: the check above would see one."""
    result = dagster_cli(["definitions", "validate", "-m", "mlassets.definitions"], dg_env, timeout=600)
    assert result.returncode == 0, output(result)[-4000:]
    assert OUTDATED.search(output(result))
    assert "dg check defs" in output(result)
