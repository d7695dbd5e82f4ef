"""Fit and predict seconds of the two humidity forest assets, same size, on the real weather files, same run.

Run alone (no servers needed): `python -m mlassets_tests.benchmarks.humidity_forests` with BENCH_FOREST_TREES
(default 100) and BENCH_FOREST_DEPTH (default 10); the data folder is MLASSETS_TEST_DATA or ../shared/data.
"""

from __future__ import annotations

import os
import tempfile

from dagster import materialize
from dagster_pyspark import LazyPySparkResource

from mlassets.assets.weather import humidity_model_spark, humidity_model_standalone, weather_features, weather_observations
from mlassets.resources import DatasetsResource, LakeParquetIOManager, LakeResource
from mlassets_tests.benchmarks.common import report
from mlassets_tests.conftest import shared_data_dir

TREES = int(os.environ.get("BENCH_FOREST_TREES", 100))
DEPTH = int(os.environ.get("BENCH_FOREST_DEPTH", 10))


def run(stack: object = None) -> None:
    """Report MLlib training rows/s against scikit-learn's (the single-process ceiling) for the same forest size."""
    spark = LazyPySparkResource(spark_config={
        "spark.master": os.environ.get("BENCH_SPARK_MASTER", "local[*]"), "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1", "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false", "spark.sql.execution.arrow.pyspark.enabled": "true"})
    forest = {"config": {"n_trees": TREES, "max_depth": DEPTH}}
    with tempfile.TemporaryDirectory() as lake_dir:
        lake = LakeResource(root=lake_dir)
        result = materialize(
            [weather_observations, weather_features, humidity_model_standalone, humidity_model_spark],
            resources={"datasets": DatasetsResource(data_dir=str(shared_data_dir())), "lake": lake, "spark": spark,
                       "io_manager": LakeParquetIOManager(lake=lake, spark=spark)},
            run_config={"ops": {"humidity_model_standalone": forest, "humidity_model_spark": forest}},
            raise_on_error=True,
        )
        sk = result.output_for_node("humidity_model_standalone").iloc[0]
        ml = result.output_for_node("humidity_model_spark").iloc[0]
    rows = int(sk["train_rows"])
    common = {"n_trees": TREES, "max_depth": DEPTH, "train_rows": rows, "predict_rows": int(sk["predict_rows"]),
              "sklearn_fit_s": round(float(sk["fit_seconds"]), 3), "mllib_fit_s": round(float(ml["fit_seconds"]), 3),
              "sklearn_predict_s": round(float(sk["predict_seconds"]), 4),
              "mllib_predict_s": round(float(ml["predict_seconds"]), 4),
              "sklearn_validation_mae": round(float(sk["validation_mae"]), 4),
              "mllib_validation_mae": round(float(ml["validation_mae"]), 4), "spark_master": spark.spark_config["spark.master"]}
    report("humidity_forest_fit", rows / float(ml["fit_seconds"]), rows / float(sk["fit_seconds"]), "rows/s", **common)


if __name__ == "__main__":
    run()
