"""Fit and predict seconds of the humidity model pairs on the real weather files, same run: the same-size random
forests (scikit-learn vs MLlib) and XGBoost with the same hyper-parameters (one process vs `xgboost.spark`).

Run alone (no servers needed): `python -m benchmarks.humidity_forests` with BENCH_FOREST_TREES
(default 100), BENCH_FOREST_DEPTH (default 10) and BENCH_XGB_TRIALS (default 16: the main job's search); the data
folder is MLASSETS_TEST_DATA or ../shared/data.
"""

from __future__ import annotations

import json
import os
import tempfile

import pandas as pd
from dagster import materialize

from mlassets.assets.weather import (
    humidity_model_spark,
    humidity_model_standalone,
    humidity_model_xgboost,
    humidity_model_xgboost_spark,
    humidity_xgboost_search,
    weather_features,
    weather_observations,
)
from mlassets.resources import DatasetsResource, LakeParquetIOManager, LakeResource, SparkResource
from mlassets.stack.executor_env import XGBOOST, spark_settings
from benchmarks.common import report
from mlassets.paths import sample_data_dir

TREES = int(os.environ.get("BENCH_FOREST_TREES", 100))
DEPTH = int(os.environ.get("BENCH_FOREST_DEPTH", 10))
XGB_TRIALS = int(os.environ.get("BENCH_XGB_TRIALS", 16))


def _pair(name: str, single: pd.Series, spark: pd.Series, unit_rows: int, **extra: object) -> None:
    common = {"train_rows": unit_rows, "predict_rows": int(single["predict_rows"]),
              "single_fit_s": round(float(single["fit_seconds"]), 3),
              "spark_fit_s": round(float(spark["fit_seconds"]), 3),
              "single_predict_s": round(float(single["predict_seconds"]), 4),
              "spark_predict_s": round(float(spark["predict_seconds"]), 4),
              "single_validation_mse": round(float(single["validation_mse"]), 4),
              "spark_validation_mse": round(float(spark["validation_mse"]), 4), **extra}
    report(name, unit_rows / float(spark["fit_seconds"]), unit_rows / float(single["fit_seconds"]), "rows/s", **common)


def run(stack: object = None) -> None:
    """Report each Spark model's training rows/s against its single-process twin's (the ceiling) on the same rows."""
    master = os.environ.get("BENCH_SPARK_MASTER", "local[*]")
    config = {"spark.master": master, "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
              "spark.ui.enabled": "false", "spark.ui.showConsoleProgress": "false", "spark.executor.memory": "768m",
              "spark.sql.execution.arrow.pyspark.enabled": "true"}
    if not master.startswith("local"):
        # materialize() runs every step in this process, so its one session must carry xgboost's environment from
        # the start (a local master's Python workers use this interpreter)
        config.update(spark_settings(XGBOOST))
    spark = SparkResource(spark_config=config)
    forest = {"config": {"n_trees": TREES, "max_depth": DEPTH}}
    with tempfile.TemporaryDirectory() as lake_dir:
        lake = LakeResource(root=lake_dir)
        result = materialize(
            [weather_observations, weather_features, humidity_xgboost_search, humidity_model_standalone,
             humidity_model_spark, humidity_model_xgboost, humidity_model_xgboost_spark],
            resources={"datasets": DatasetsResource(data_dir=str(sample_data_dir())), "lake": lake, "spark": spark,
                       "io_manager": LakeParquetIOManager(lake=lake, spark=spark)},
            run_config={"ops": {"humidity_model_standalone": forest, "humidity_model_spark": forest,
                                "humidity_xgboost_search": {"config": {"trials": XGB_TRIALS, "max_seconds": 1e6}}}},
            raise_on_error=True,
        )
        records = {node: result.output_for_node(node).iloc[0] for node in (
            "humidity_model_standalone", "humidity_model_spark", "humidity_model_xgboost",
            "humidity_model_xgboost_spark")}
        search_seconds = result.asset_materializations_for_node("humidity_xgboost_search")[0].metadata[
            "search_seconds"].value
    rows = int(records["humidity_model_standalone"]["train_rows"])
    _pair("humidity_forest_fit", records["humidity_model_standalone"], records["humidity_model_spark"], rows,
          n_trees=TREES, max_depth=DEPTH, spark_master=master)
    xgb = records["humidity_model_xgboost"]
    _pair("humidity_xgboost_fit", xgb, records["humidity_model_xgboost_spark"], rows, rounds=int(xgb["n_trees"]),
          params=json.loads(xgb["params"]), search_trials=XGB_TRIALS, search_s=round(float(search_seconds), 1),
          spark_master=master)


if __name__ == "__main__":
    run()
