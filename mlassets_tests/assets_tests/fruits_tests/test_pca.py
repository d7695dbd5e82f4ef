"""fruit_pca's driver fit against MLlib's own Pipeline.fit, and the asset with either fit on generated features."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import AssetCheckResult, Output, build_asset_context
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.feature import PCA, StandardScaler
from pyspark.ml.functions import array_to_vector, vector_to_array

from mlassets.assets.fruits.pca import FruitPcaConfig, fit_on_driver, fruit_pca
from mlassets.resources import LakeResource


def correlated_features(rows: int, dims: int, seed: int) -> np.ndarray:
    """Rows of correlated, unevenly scaled float32 features (a few latent factors plus noise), one column constant."""
    rng = np.random.default_rng(seed)
    latent = rng.normal(size=(rows, 5)) @ rng.normal(size=(5, dims))
    features = (latent + 0.1 * rng.normal(size=(rows, dims))) * rng.uniform(0.01, 50, size=dims)
    features[:, 3] = 2.5
    return features.astype(np.float32)


def projections(model: PipelineModel, vectors) -> np.ndarray:
    """The model's `pca` column of every row, in row order."""
    return np.asarray(model.transform(vectors).select(vector_to_array("pca").alias("p")).toPandas()["p"].tolist())


@pytest.mark.parametrize(("rows", "dims", "k"), [(40, 64, 39), (120, 16, 10)])  # fewer rows than features, and more
def test_the_driver_fit_is_mllibs_model(spark, tmp_path: Path, rows: int, dims: int, k: int) -> None:
    features = correlated_features(rows, dims, seed=rows)
    as_doubles = features.astype(np.float64)
    vectors = spark.createDataFrame(pd.DataFrame({"features": list(features)})).select(
        array_to_vector("features").alias("vector")).cache()
    reference = Pipeline(stages=[StandardScaler(inputCol="vector", outputCol="scaled", withMean=True, withStd=True),
                                 PCA(k=k, inputCol="scaled", outputCol="pca")]).fit(vectors)
    model = fit_on_driver(as_doubles, k)

    np.testing.assert_allclose(model.stages[0].mean.toArray(), reference.stages[0].mean.toArray(), rtol=1e-12)
    np.testing.assert_allclose(model.stages[0].std.toArray(), reference.stages[0].std.toArray(), rtol=1e-9)
    assert model.stages[0].std.toArray()[3] == 0.0
    np.testing.assert_allclose(model.stages[1].explainedVariance.toArray(),
                               reference.stages[1].explainedVariance.toArray(), rtol=1e-7, atol=1e-12)
    ours, theirs = projections(model, vectors), projections(reference, vectors)
    assert ours.shape == (rows, k)
    signs = np.sign((ours * theirs).sum(axis=0))  # any two SVDs may flip a component
    np.testing.assert_allclose(ours * signs, theirs, atol=1e-7 * np.abs(theirs).max())

    model.write().overwrite().save(str(tmp_path / "model"))
    loaded = PipelineModel.load(str(tmp_path / "model"))
    assert loaded.stages[1].getK() == k and loaded.stages[0].getWithMean() and loaded.stages[0].getWithStd()
    np.testing.assert_array_equal(projections(loaded, vectors), ours)


@pytest.mark.parametrize("fit", ["driver", "mllib"])
def test_fruit_pca_with_either_fit(spark, tmp_path: Path, fit: str) -> None:
    features = correlated_features(30, 48, seed=7)
    frame = spark.createDataFrame(pd.DataFrame({
        "path": [f"file:/fruits/{i}.jpg" for i in range(30)], "label": ["apple", "pear"] * 15,
        "features": list(features)}))
    lake = LakeResource(root=str(tmp_path / "lake"))
    output, check = list(fruit_pca(build_asset_context(), config=FruitPcaConfig(k=50, fit=fit), lake=lake,
                                   fruit_features=frame))
    assert isinstance(output, Output) and isinstance(check, AssetCheckResult)
    assert check.passed, check.metadata
    metadata = {key: getattr(value, "value", value) for key, value in output.metadata.items()}
    assert metadata["fit"] == fit and metadata["k"] == 29 and metadata["dagster/row_count"] == 30
    assert (metadata["lapack"] == "numpy") == (fit == "driver")
    projected = output.value.toPandas()
    assert len(projected) == 30 and {len(p) for p in projected["pca_features"]} == {29}
    saved = PipelineModel.load(lake.spark_uri("fruit_pca_model"))
    assert saved.stages[-1].getK() == 29
