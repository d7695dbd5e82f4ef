"""The whole asset graph through the CLI users run: `dagster asset materialize` and `dagster job execute`."""

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parent.parent

# What the main job leaves in the lake, one line per asset so each group adds its own.
MAIN_JOB_LAKE_DIRS = {
    "cifar10_images",
    "cifar_classifier",
    "susy_dataset",
    "weather_observations",
}


def _dagster(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).with_name("dagster")), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=900)


def test_materialize_one_asset_from_the_cli(test_env: dict[str, str], tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    env = {**os.environ, **test_env, "MLASSETS_LAKE_ROOT": str(lake), "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    result = _dagster(["asset", "materialize", "--select", "weather_observations", "-m", "mlassets.definitions"], env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "RUN_SUCCESS" in result.stdout + result.stderr
    assert len(pd.read_parquet(lake / "weather_observations")) == 11_231


def test_main_job(test_env: dict[str, str], tmp_path: Path) -> None:
    env = {**os.environ, **test_env, "MLASSETS_LAKE_ROOT": str(tmp_path / "lake"),
           "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    result = _dagster(["job", "execute", "-m", "mlassets.definitions", "-j", "main_job"], env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    lake = tmp_path / "lake"
    assert {p.name for p in lake.iterdir()} >= MAIN_JOB_LAKE_DIRS
    assert len(pd.read_parquet(lake / "cifar10_images")) == 10_000
    assert len(pd.read_parquet(lake / "susy_dataset")) == 10_000
    model = pd.read_parquet(lake / "cifar_classifier").iloc[0]
    assert model["model_id"].startswith("cifar_classifier:v")
