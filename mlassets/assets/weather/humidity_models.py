"""Humidity random forests of the same size: scikit-learn in one process and Spark MLlib, on the same split."""

import json
import math
import time
from typing import Any

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, Output, asset
from pydantic import Field

from mlassets.assets.weather.features import feature_columns
from mlassets.automation import FOLLOWS_INPUTS, SPARK_POOL, TRANSIENT_RETRY
from mlassets.metadata import table_metadata
from mlassets.models.serialization import npz_arrays, npz_bytes, sha256_hex
from mlassets.resources import LakeResource, SparkResource

SCORED_SPLITS = ("validation", "test_2020q4", "forecast_2021")
FOREST_FAMILY = "random_forest_regressor"


class HumidityForestConfig(Config):
    """The size of the random forest; both libraries get the same defaults so their timings compare."""

    n_trees: int = Field(default=20, ge=1, description="Trees in the forest.")
    max_depth: int = Field(default=8, ge=1, le=30, description="Maximum depth of every tree.")
    seed: int = Field(default=0, description="Seed of the bootstrap samples and feature subsets.")


def forest_arrays(model: Any, columns: list[str]) -> dict[str, np.ndarray]:
    """A fitted scikit-learn forest regressor as flat node arrays (children as absolute node indices, -1 at leaves)."""
    trees = [estimator.tree_ for estimator in model.estimators_]
    offsets = np.cumsum([0] + [tree.node_count for tree in trees])
    left, right = [], []
    for tree, offset in zip(trees, offsets):
        left.append(np.where(tree.children_left >= 0, tree.children_left + offset, -1))
        right.append(np.where(tree.children_right >= 0, tree.children_right + offset, -1))
    return {
        "roots": offsets[:-1].astype(np.int64),
        "left": np.concatenate(left).astype(np.int64),
        "right": np.concatenate(right).astype(np.int64),
        "feature": np.concatenate([tree.feature for tree in trees]).astype(np.int64),
        "threshold": np.concatenate([tree.threshold for tree in trees]).astype(np.float64),
        "value": np.concatenate([tree.value[:, 0, 0] for tree in trees]).astype(np.float64),
        "columns": np.array(columns, dtype=str),
    }


def predict_forest(arrays: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """The forest's mean leaf value for each row, computed like scikit-learn (features compared as float32)."""
    x = np.asarray(features, dtype=np.float32).astype(np.float64)
    rows = np.arange(len(x))
    node = np.repeat(arrays["roots"][:, None], len(x), axis=1)
    left, right, feature, threshold = arrays["left"], arrays["right"], arrays["feature"], arrays["threshold"]
    while True:
        inner = left[node] >= 0
        if not inner.any():
            break
        go_left = x[rows[None, :], np.where(inner, feature[node], 0)] <= threshold[node]
        node = np.where(inner, np.where(go_left, left[node], right[node]), node)
    return arrays["value"][node].mean(axis=0)


def regression_errors(truth: np.ndarray, predicted: np.ndarray) -> tuple[float, float]:
    """(mean squared error, mean absolute error)."""
    error = np.asarray(predicted, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return float(np.mean(error**2)), float(np.mean(np.abs(error)))


def model_record(context: AssetExecutionContext, library: str, family: str, params: dict[str, Any],
                 train: pd.DataFrame, validation: pd.DataFrame, validation_predicted: np.ndarray, fit_seconds: float,
                 predict_seconds: float, predict_rows: int, artifact_key: str, artifact_uri: str,
                 artifact_sha256: str | None) -> pd.DataFrame:
    """A fitted humidity model's family, size, hyper-parameters, training rows, seconds, validation errors, artifact."""
    mse, mae = regression_errors(validation["humidity"].to_numpy(), validation_predicted)
    return pd.DataFrame([{
        "model": context.asset_key.to_user_string(), "library": library, "family": family,
        "n_trees": int(params["n_trees"]), "max_depth": int(params["max_depth"]),
        "params": json.dumps(params, sort_keys=True), "features": ",".join(feature_columns()),
        "train_rows": len(train), "train_first": train["date"].min(), "train_last": train["date"].max(),
        "fit_seconds": fit_seconds, "predict_seconds": predict_seconds, "predict_rows": predict_rows,
        "validation_mse": mse, "validation_mae": mae,
        "artifact_key": artifact_key, "artifact_uri": artifact_uri, "artifact_sha256": artifact_sha256,
        "run_id": context.run_id,
    }])


def record_metadata(record: pd.DataFrame, **extra: Any) -> dict[str, Any]:
    """The metadata of a model record asset: the table, timings, validation MSE and where the model lies."""
    row = record.iloc[0]
    return {**table_metadata(record), "fit_seconds": float(row["fit_seconds"]),
            "predict_seconds": float(row["predict_seconds"]), "validation_mse": float(row["validation_mse"]),
            "artifact": str(row["artifact_uri"]), **extra}


def split_rows(features: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows, rows to score: validation, 2020Q4 and 2021) of weather_features."""
    train = features[features["split"] == "train"]
    scored = features[features["split"].isin(SCORED_SPLITS)]
    if train.empty or train["humidity"].isna().any():
        raise ValueError("weather_features has no training rows, or training rows without humidity")
    return train, scored


def features_per_split() -> int:
    """Features each forest split draws from: a third, rounded up (as MLlib's "onethird"; scikit-learn rounds down)."""
    return math.ceil(len(feature_columns()) / 3)


def forest_params(config: HumidityForestConfig) -> dict[str, Any]:
    """The forest's size and sampling, as recorded for both libraries."""
    return {"n_trees": config.n_trees, "max_depth": config.max_depth, "features_per_split": features_per_split(),
            "seed": config.seed}


@asset(code_version="2", automation_condition=FOLLOWS_INPUTS, retry_policy=TRANSIENT_RETRY)
def humidity_model_standalone(context: AssetExecutionContext, config: HumidityForestConfig, lake: LakeResource,
                              weather_features: pd.DataFrame) -> Output[pd.DataFrame]:
    """The scikit-learn random forest's record: size, fit/predict seconds, validation errors, npz artifact in the lake."""
    from sklearn.ensemble import RandomForestRegressor

    columns = feature_columns()
    train, scored = split_rows(weather_features)
    model = RandomForestRegressor(n_estimators=config.n_trees, max_depth=config.max_depth,
                                  max_features=features_per_split(), bootstrap=True, min_samples_leaf=1,
                                  random_state=config.seed, n_jobs=-1)
    start = time.perf_counter()
    model.fit(train[columns].to_numpy(np.float64), train["humidity"].to_numpy(np.float64))
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = model.predict(scored[columns].to_numpy(np.float64))
    predict_seconds = time.perf_counter() - start

    arrays = forest_arrays(model, columns)
    if not np.allclose(predict_forest(arrays, scored[columns].to_numpy()), predicted, rtol=0, atol=1e-9):
        raise RuntimeError("the exported forest arrays do not reproduce scikit-learn's predictions")
    data = npz_bytes(arrays)
    key = f"models/humidity_model_standalone/{context.run_id}/forest.npz"
    uri = lake.write_bytes(data, *key.split("/"))
    validation = (scored["split"] == "validation").to_numpy()
    record = model_record(context, "scikit-learn", FOREST_FAMILY, forest_params(config), train, scored[validation],
                          predicted[validation], fit_seconds, predict_seconds, len(scored), key, uri, sha256_hex(data))
    return Output(record, metadata=record_metadata(record, nodes=int(len(arrays["value"]))))


def fit_on_spark(session: Any, estimator: Any, features: pd.DataFrame) -> tuple[Any, np.ndarray, float, float]:
    """(model, scored rows' predictions in order, fit seconds, predict seconds) of a Spark ML regressor."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    columns = feature_columns()
    frame = session.createDataFrame(features[["split", *columns, "humidity"]].assign(row=np.arange(len(features))))
    assembled = VectorAssembler(inputCols=columns, outputCol="features").transform(frame)
    train_df = assembled.filter(F.col("split") == "train").select("features", "humidity").cache()
    scored_df = assembled.filter(F.col("split").isin(*SCORED_SPLITS)).select("row", "features").cache()
    train_df.count(), scored_df.count()  # materialise the caches so that the timings below exclude the conversion
    try:
        start = time.perf_counter()
        model = estimator.fit(train_df)
        fit_seconds = time.perf_counter() - start
        start = time.perf_counter()
        predicted = model.transform(scored_df).select("row", "prediction").toPandas()
        predict_seconds = time.perf_counter() - start
    finally:
        train_df.unpersist(), scored_df.unpersist()
    rows = np.flatnonzero(features["split"].isin(SCORED_SPLITS).to_numpy())
    return model, predicted.set_index("row")["prediction"].reindex(rows).to_numpy(), fit_seconds, predict_seconds


@asset(code_version="2", automation_condition=FOLLOWS_INPUTS, pool=SPARK_POOL, retry_policy=TRANSIENT_RETRY)
def humidity_model_spark(context: AssetExecutionContext, config: HumidityForestConfig, lake: LakeResource,
                         spark: SparkResource, weather_features: pd.DataFrame) -> Output[pd.DataFrame]:
    """The Spark MLlib random forest's record: size, fit/predict seconds, validation errors, MLlib model in the lake."""
    from pyspark.ml.regression import RandomForestRegressor

    train, scored = split_rows(weather_features)
    session = spark.spark_session
    forest = RandomForestRegressor(featuresCol="features", labelCol="humidity", numTrees=config.n_trees,
                                   maxDepth=config.max_depth, featureSubsetStrategy=str(features_per_split()),
                                   bootstrap=True, subsamplingRate=1.0, minInstancesPerNode=1, seed=config.seed)
    model, predicted, fit_seconds, predict_seconds = fit_on_spark(session, forest, weather_features)
    key = f"models/humidity_model_spark/{context.run_id}"
    lake.ensure_bucket()
    model.write().overwrite().save(lake.spark_uri(*key.split("/")))
    validation = (scored["split"] == "validation").to_numpy()
    record = model_record(context, "spark-mllib", FOREST_FAMILY, forest_params(config), train, scored[validation],
                          predicted[validation], fit_seconds, predict_seconds, len(scored), key,
                          lake.uri(*key.split("/")), None)
    return Output(record, metadata=record_metadata(record, spark_master=session.sparkContext.master))


def read_artifact(lake: LakeResource, record: pd.Series) -> bytes:
    """The bytes of a record's stored model, refused when their sha256 differs from the recorded one."""
    data = lake.read_bytes(*record["artifact_key"].split("/"))
    digest = sha256_hex(data)
    if digest != record["artifact_sha256"]:
        raise ValueError(f"{record['artifact_uri']}: sha256 {digest} differs from the recorded {record['artifact_sha256']}")
    return data


def load_standalone_predictions(lake: LakeResource, record: pd.Series, features: np.ndarray) -> np.ndarray:
    """Predictions of the stored scikit-learn forest (sha256 checked) for the feature rows."""
    arrays = npz_arrays(read_artifact(lake, record))
    if list(arrays["columns"]) != feature_columns():
        raise ValueError(f"{record['artifact_uri']}: trained on columns {list(arrays['columns'])}, "
                         f"not the current features")
    return predict_forest(arrays, features)


def load_spark_predictions(lake: LakeResource, spark: SparkResource, record: pd.Series,
                           rows: pd.DataFrame) -> np.ndarray:
    """Predictions of the stored MLlib forest for the rows (the feature columns), in row order."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.ml.regression import RandomForestRegressionModel

    session = spark.spark_session  # starts the lazy session: MLlib's loader needs a running SparkContext
    model = RandomForestRegressionModel.load(lake.spark_uri(*record["artifact_key"].split("/")))
    frame = session.createDataFrame(rows[feature_columns()].assign(row=np.arange(len(rows))))
    assembled = VectorAssembler(inputCols=feature_columns(), outputCol="features").transform(frame)
    predicted = model.transform(assembled).select("row", "prediction").toPandas()
    return predicted.set_index("row")["prediction"].reindex(np.arange(len(rows))).to_numpy()
