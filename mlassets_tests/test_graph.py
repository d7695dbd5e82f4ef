"""The whole asset graph through the CLI users run: `dagster asset materialize` and `mlassets materialize`."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

from mlassets.stack import StackSettings
from mlassets_tests.conftest import dagster_cli

REPO = Path(__file__).resolve().parent.parent

# What the main job leaves in the lake, one line per asset so each group adds its own.
MAIN_JOB_LAKE_DIRS = {
    "cifar10_images",
    "cifar_classifier",
    "sample_image_messages",
    "producer_error_counts",
    "class_accuracy",
    "susy_dataset",
    "susy_train_topic",
    "susy_model",
    "susy_test_scaled",
    "susy_evaluation",
    "susy_evaluation_summary",
    "weather_observations",
    "weather_features",
    "humidity_model_standalone",
    "humidity_model_spark",
    "humidity_predictions",
    "humidity_2020q4_metrics",
    "humidity_forecast_2021",
    "string_count_benchmark",
    "fruit_images",
    "fruit_features",
    "fruit_pca",
    "fruit_pca_model",
    "fruit_embedding_plot",
}


def stack_env(stack: StackSettings) -> dict[str, str]:
    """MLASSETS_STACK_* variables naming the test stack, so `mlassets materialize` finds it already up."""
    return {"MLASSETS_STACK_RUN_DIR": str(stack.run_dir), "MLASSETS_STACK_CACHE_DIR": str(stack.cache_dir),
            "MLASSETS_STACK_KAFKA_PORT": str(stack.kafka_port),
            "MLASSETS_STACK_KAFKA_CONTROLLER_PORT": str(stack.kafka_controller_port),
            "MLASSETS_STACK_MONGO_PORT": str(stack.mongo_port), "MLASSETS_STACK_S3_PORT": str(stack.s3_port)}


def test_materialize_one_asset_from_the_cli(test_env: dict[str, str], tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    env = {**os.environ, **test_env, "MLASSETS_LAKE_ROOT": str(lake), "DAGSTER_HOME": str(tmp_path / "home")}
    (tmp_path / "home").mkdir()
    result = dagster_cli(["asset", "materialize", "--select", "weather_observations", "-m", "mlassets.definitions"], env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "RUN_SUCCESS" in result.stdout + result.stderr
    assert len(pd.read_parquet(lake / "weather_observations")) == 11_231


def test_main_run(stack: StackSettings, test_env: dict[str, str], tmp_path: Path) -> None:
    """`mlassets materialize` (the README's main command) against the running test stack: every asset."""
    env = {**os.environ, **test_env, "MLASSETS_LAKE_ROOT": str(tmp_path / "lake"),
           "DAGSTER_HOME": str(tmp_path / "home"), **stack_env(stack)}
    result = subprocess.run([str(Path(sys.executable).with_name("mlassets")), "materialize"], env=env, cwd=REPO,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    lake = tmp_path / "lake"
    assert {p.name for p in lake.iterdir()} >= MAIN_JOB_LAKE_DIRS
    assert len(pd.read_parquet(lake / "cifar10_images")) == 10_000
    assert len(pd.read_parquet(lake / "susy_dataset")) == 10_000
    model = pd.read_parquet(lake / "cifar_classifier").iloc[0]
    assert model["model_id"].startswith("cifar_classifier:v")
    # the IoT pipeline ran end to end: 4 x 250 sample images classified, and the per-producer table printed
    (day,) = [p.name for p in (lake / "producer_error_counts").iterdir() if p.is_dir()]
    producers = pd.read_parquet(lake / "producer_error_counts" / day)
    assert producers["producer_id"].tolist() == ["producer-1", "producer-2", "producer-3", "producer-4"]
    # 250 each, plus 250 per earlier main run today when the test stack's data was kept (MLASSETS_TEST_KEEP_STACK)
    totals = producers["total_inferences"] + producers["pending_count"]
    assert totals.nunique() == 1 and totals.iloc[0] >= 250 and totals.iloc[0] % 250 == 0
    out = result.stdout
    assert f"wrong inferences per producer on {day}" in out
    assert "| producer-4 |" in out
    # what a person reads: a line per phase and asset, a summary with the headline figures, the UI command
    assert "local stack:" in out and "kafka start" in out and "Spark jars:" in out
    for asset in ("cifar_classifier", "susy_model", "fruit_pca", "humidity_forecast_2021"):
        assert f"  {asset} " in out
    assert "0 failed, 0 skipped" in out
    for figure in ("SUSY held-out accuracy", "SUSY held-out AUC", "fruit PCA explained variance",
                   "IoT drain images/s"):
        assert figure in out
    assert "full log: " in out
    ui = re.search(r"^  cd (\S+) && DAGSTER_HOME=(\S+) (\S+) dev$", out, re.MULTILINE)  # `dg dev`, no warning
    assert ui, out[-2000:]
    assert (Path(ui[1]) / "pyproject.toml").is_file() and Path(ui[3]).name == "dg" and Path(ui[3]).is_file()
    log = Path(out.split("full log: ")[-1].splitlines()[0])
    assert "STEP_SUCCESS" in log.read_text()  # Dagster's event stream is in the log, not on the terminal
    assert "DEBUG" not in out and "Warning" not in out + result.stderr
