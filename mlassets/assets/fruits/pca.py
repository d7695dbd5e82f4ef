"""StandardScaler + PCA of the fruit features as a Spark MLlib PipelineModel, saved in the lake."""

import time
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MetadataValue,
    Output,
    TableColumn,
    TableSchema,
    asset,
)
from pydantic import Field
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import PCA, PCAModel, StandardScaler, StandardScalerModel
from pyspark.ml.functions import array_to_vector, vector_to_array
from pyspark.ml.linalg import DenseMatrix, DenseVector
from pyspark.sql import DataFrame as SparkDF

from mlassets.automation import FOLLOWS_INPUTS, SPARK_POOL, TRANSIENT_RETRY
from mlassets.metadata import markdown_table
from mlassets.resources import LakeResource

ASSET = "fruit_pca"
MODEL_DIR = "fruit_pca_model"
VARIANCE_TOLERANCE = 1e-3
VECTOR, SCALED, PROJECTED = "vector", "scaled", "pca"  # the PipelineModel's input, middle and output columns


class FruitPcaConfig(Config):
    """The PCA of the fruit features."""

    k: int = Field(default=300, ge=1, description=(
        "Principal components to keep, capped at min(rows - 1, features): n centred rows span at most n - 1 "
        "directions."))
    leading: int = Field(default=10, ge=1, description="Leading components listed in the metadata.")
    fit: Literal["driver", "mllib"] = Field(default="driver", description=(
        "Where the scaler and the PCA are fitted. `driver`: from the feature matrix this asset already collects for "
        "its check, by one thin SVD of the standardised rows (rows x features, not MLlib's full features x features "
        "SVD of the covariance), and the MLlib models are built from the result: the same model up to the "
        "components' signs. `mllib`: Spark MLlib's own Pipeline.fit (a Spark job per pass and the full SVD on the "
        "driver). Either way the saved PipelineModel is MLlib's and Spark applies it."))


def components_for(k: int, rows: int, dims: int) -> int:
    """k capped at what rows and dims allow (at least 1); fewer than 2 rows cannot be centred."""
    if rows < 2:
        raise ValueError(f"PCA needs at least 2 feature rows, got {rows}")
    return max(1, min(k, rows - 1, dims))


def sklearn_explained_variance(features: np.ndarray, k: int) -> np.ndarray:
    """scikit-learn's StandardScaler + PCA explained-variance ratios of the first k components."""
    from sklearn.decomposition import PCA as SkPCA
    from sklearn.preprocessing import StandardScaler as SkScaler

    scaled = SkScaler(with_mean=True, with_std=True).fit_transform(features.astype(np.float64))
    return SkPCA(n_components=k, svd_solver="full").fit(scaled).explained_variance_ratio_


def fit_on_driver(features: np.ndarray, k: int) -> PipelineModel:
    """MLlib's StandardScaler(withMean, withStd) + PCA(k) PipelineModel fitted on the rows of features (rows x dims).

    The same numbers as MLlib's own fit: its unbiased standard deviation, zero for a constant column (whose scaled
    values are then 0), and explained variance ratios over every eigenvalue of the covariance; the components are
    the right singular vectors of the standardised rows, so they may differ from MLlib's in sign only.
    """
    rows = np.asarray(features, dtype=np.float64)
    mean = rows.mean(axis=0)
    std = rows.std(axis=0, ddof=1)
    scale = np.divide(1.0, std, out=np.zeros_like(std), where=std != 0)
    _, singular, right = np.linalg.svd((rows - mean) * scale, full_matrices=False)
    variance = singular ** 2
    components = right[:k].T  # dims x k
    # The Scala models' constructors are private[ml], which the JVM does not enforce: the one way to build them from
    # arrays, and what MLlib's own fit does with its results.
    scaler = StandardScalerModel._create_from_java_class(
        "org.apache.spark.ml.feature.StandardScalerModel", StandardScalerModel._randomUID(),
        DenseVector(std), DenseVector(mean))
    scaler._set(inputCol=VECTOR, outputCol=SCALED, withMean=True, withStd=True)
    pca = PCAModel._create_from_java_class(
        "org.apache.spark.ml.feature.PCAModel", PCAModel._randomUID(),
        DenseMatrix(components.shape[0], k, components.ravel(order="F")), DenseVector(variance[:k] / variance.sum()))
    pca._set(inputCol=SCALED, outputCol=PROJECTED, k=k)
    return PipelineModel(stages=[scaler, pca])


def jvm_lapack(frame: SparkDF) -> str:
    """The LAPACK that MLlib's driver-side SVD runs on: JNILAPACK (the system's liblapack.so.3) or F2jLAPACK (Java)."""
    try:
        lapack = frame.sparkSession._jvm.dev.ludovic.netlib.lapack.LAPACK.getInstance()
        return str(lapack.getClass().getSimpleName())
    except Exception:  # Spark Connect has no JVM gateway; the figure is informative only
        return "unknown"


@asset(
    code_version="1",
    automation_condition=FOLLOWS_INPUTS,
    pool=SPARK_POOL,
    retry_policy=TRANSIENT_RETRY,
    check_specs=[AssetCheckSpec("explained_variance_matches_sklearn", asset=ASSET,
                                description=f"MLlib's explained variance ratios equal scikit-learn's on the same "
                                            f"features within {VARIANCE_TOLERANCE}")],
)
def fruit_pca(context: AssetExecutionContext, config: FruitPcaConfig, lake: LakeResource,
              fruit_features: SparkDF) -> Iterator[Output[SparkDF] | AssetCheckResult]:
    """One row per fruit image: path, label and its standardised PCA projection pca_features array<double>[k]."""
    started = time.perf_counter()
    vectors = fruit_features.select("path", "label", array_to_vector("features").alias(VECTOR))
    if config.fit == "driver":
        # one job collects the matrix: the row count, the width, the fit and scikit-learn's input for the check
        column = fruit_features.select("features").toPandas()["features"]
    else:
        # MLlib's fit passes over the rows three times: one job fills the cache and collects the matrix
        vectors = vectors.persist()
        column = vectors.select(vector_to_array(VECTOR).alias("features")).toPandas()["features"]
    features = np.stack(column.to_numpy()).astype(np.float64) if len(column) else np.empty((0, 0))
    rows, dims = features.shape
    collect_seconds = time.perf_counter() - started
    k = components_for(config.k, rows, dims)
    if k < config.k:
        context.log.info(f"fruit_pca: k capped from {config.k} to {k} ({rows} rows, {dims} features)")
    fitting = time.perf_counter()
    if config.fit == "driver":
        model = fit_on_driver(features, k)
    else:
        model = Pipeline(stages=[
            StandardScaler(inputCol=VECTOR, outputCol=SCALED, withMean=True, withStd=True),
            PCA(k=k, inputCol=SCALED, outputCol=PROJECTED),
        ]).fit(vectors)
    pipeline_fit_seconds = time.perf_counter() - fitting
    fit_seconds = time.perf_counter() - started
    saving = time.perf_counter()
    model_uri = lake.spark_uri(MODEL_DIR)
    model.write().overwrite().save(model_uri)
    save_seconds = time.perf_counter() - saving
    explained = np.asarray(model.stages[-1].explainedVariance.toArray())

    reference = sklearn_explained_variance(features, k)
    difference = float(np.max(np.abs(explained - reference)))
    leading = pd.DataFrame({
        "component": np.arange(1, min(config.leading, k) + 1),
        "mllib": explained[: config.leading],
        "sklearn": reference[: config.leading],
        "cumulative": np.cumsum(explained)[: config.leading],
    })
    projected = model.transform(vectors).select("path", "label", vector_to_array(PROJECTED).alias("pca_features"))
    yield Output(
        projected,
        metadata={
            "dagster/row_count": rows,
            "dagster/column_schema": TableSchema(columns=[
                TableColumn("path", "string"), TableColumn("label", "string"),
                TableColumn("pca_features", f"array<double>[{k}]", description="standardised features projected"),
            ]),
            "k": k,
            "k_requested": config.k,
            "input_features": dims,
            "explained_variance_total": float(explained.sum()),
            "explained_variance_first": float(explained[0]),
            "explained_variance_leading": MetadataValue.md(markdown_table(leading, max_rows=config.leading)),
            "model_uri": model_uri,
            "fit": config.fit,
            "fit_seconds": round(fit_seconds, 2),
            "collect_seconds": round(collect_seconds, 2),
            "pipeline_fit_seconds": round(pipeline_fit_seconds, 2),
            "save_seconds": round(save_seconds, 2),
            "lapack": "numpy" if config.fit == "driver" else jvm_lapack(fruit_features),
        },
    )
    yield AssetCheckResult(
        check_name="explained_variance_matches_sklearn", passed=difference <= VARIANCE_TOLERANCE,
        metadata={"max_abs_difference": difference, "tolerance": VARIANCE_TOLERANCE,
                  "sklearn_total": float(reference.sum()), "mllib_total": float(explained.sum())},
    )
