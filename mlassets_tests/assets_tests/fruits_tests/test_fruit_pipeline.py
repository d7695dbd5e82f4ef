"""The fruits group end to end on Spark: lake as a local directory and as s3:// on the real moto server (s3a)."""

from pathlib import Path

import numpy as np
import pytest
from dagster import materialize

from mlassets.assets.fruits import fruit_embedding_plot, fruit_features, fruit_images, fruit_pca
from mlassets.resources import DatasetsResource, LakeParquetIOManager, LakeResource
from mlassets.stack import StackSettings
from mlassets_tests.assets_tests.fruits_tests.test_images import BAD_FILES, build_source


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_fruit_pipeline(kind: str, tmp_path: Path, stack: StackSettings, spark, local_resources: dict,
                        unique: str) -> None:
    classes = 2 if kind == "local" else 3
    counts = build_source(tmp_path / "source", classes=classes, per_class=3)
    rows = sum(counts.values())
    if kind == "local":
        lake = LakeResource(root=str(tmp_path / "lake"))
    else:
        lake = LakeResource(root=f"s3://fruits-{unique}/lake", endpoint_url=stack.s3_endpoint,
                            access_key_id="local", secret_access_key="local")
    spark_resource = local_resources["spark"]
    result = materialize(
        [fruit_images, fruit_features, fruit_pca, fruit_embedding_plot],
        resources={"datasets": DatasetsResource(data_dir=str(tmp_path / "source")), "lake": lake,
                   "spark": spark_resource, "io_manager": LakeParquetIOManager(lake=lake, spark=spark_resource)},
        run_config={"ops": {
            "fruit_images": {"config": {"max_images_per_class": None}},
            # local: the default, one task in local mode; s3: four tasks over local[2]'s two workers
            "fruit_features": {"config": {"weights": "none", "batch_size": 4, **({} if kind == "local" else
                                                                                 {"partitions": 4})}},
        }},
    )
    assert result.success
    metadata = {e.event_specific_data.materialization.asset_key.to_user_string():
                {k: v.value for k, v in e.event_specific_data.materialization.metadata.items()}
                for e in result.get_asset_materialization_events()}
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"no_quarantined_files": False, "feature_vectors": True, "pretrained_weights": False,
                      "explained_variance_matches_sklearn": True}

    assert metadata["fruit_images"]["quarantined"] == len(BAD_FILES)
    features_meta = metadata["fruit_features"]
    assert features_meta["dagster/row_count"] == rows and features_meta["weights_used"] == "none"
    # The model is built once per Python worker (local[2]: at most 2), not once per Arrow batch: by the warm-up's
    # thread, so in local mode never by the UDF; workers reused from an earlier test in the same Spark session
    # already hold it (0 builds).
    builds = features_meta["warmup_model_builds"] + features_meta["model_builds"]
    if kind == "local":
        assert features_meta["partitions"] == 1 and features_meta["udf_batches"] >= 1
        assert features_meta["model_builds"] == 0 and builds <= 1
    else:
        assert features_meta["partitions"] == 4 and features_meta["udf_batches"] >= 4
        assert builds <= 2 < features_meta["udf_batches"]

    features = lake.read_parquet("fruit_features")
    assert sorted(features.columns) == ["features", "label", "path"] and len(features) == rows
    assert features.groupby("label").size().to_dict() == counts
    assert {len(f) for f in features["features"]} == {1280} and features["features"].iloc[0].dtype == np.float32
    assert features["path"].str.startswith("s3a://" if kind == "s3" else "file:").all()

    pca = lake.read_parquet("fruit_pca")
    assert metadata["fruit_pca"]["k"] == rows - 1 and {len(f) for f in pca["pca_features"]} == {rows - 1}
    assert 0.999 < metadata["fruit_pca"]["explained_variance_total"] <= 1.0 + 1e-9
    from pyspark.ml import PipelineModel

    model = PipelineModel.load(lake.spark_uri("fruit_pca_model"))
    assert model.stages[-1].getK() == rows - 1

    png = lake.read_bytes("fruit_embedding_plot", "tsne.png")
    assert png.startswith(b"\x89PNG") and "data:image/png;base64," in metadata["fruit_embedding_plot"]["plot"]
    assert len(lake.read_parquet("fruit_embedding_plot", "points")) == rows
