"""Fruits: 320 images (32 classes x 10) through fruit_images + fruit_features + fruit_pca, and the UDF's images/s.

Ceilings measured in the same run: a plain single-process loop in a fresh process (TensorFlow import, model build,
decode, batched MobileNetV2 predict, scikit-learn StandardScaler + PCA) for the wall time, and bare Keras `predict`
on already decoded arrays for images/s (and, under each job, the floor it cannot go below: that predict, the loop's
decode of as many images, the same Spark job with a UDF that returns zeros, and for the cold job the model's build and
first trace, which the workers' warm-up overlaps with the job's read, so the cold job may run under that floor);
scikit-learn's scaler + PCA on the same features for the PCA fit, with MLlib's own fit (`fit: mllib`) of them timed in
the same session. The feature step is run twice in one Spark session: the cold run pays for starting the Python
workers, importing TensorFlow and building the model once per worker; the warm run reuses the workers and their cached
model, and is repeated over every sample image (2,060), where Spark's fixed cost per job weighs a sixth as much.
Run alone: `python -m benchmarks.fruits_pipeline` (needs no stack; the lake is a temporary folder);
`BENCH_FRUITS_THREADS` sets the workers' TensorFlow threads (`threads_per_worker`, default 0: TensorFlow's own).
"""

from __future__ import annotations

import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa  # at module level: the Arrow UDF's string annotations resolve against these globals

from benchmarks.common import PeakTreeRss, report
from mlassets.paths import sample_data_dir

CLASSES, PER_CLASS = 32, 10
ORIGINAL_EMR_SECONDS = 95.0  # the original: 320 images on a 4-node m5.xlarge EMR cluster
TARGETS = {"cold": 0.5, "warm": 0.9}  # issue 17: images/s against bare predict
THREADS = int(os.environ.get("BENCH_FRUITS_THREADS", 0))


def _materialize(assets: list, resources: dict, config: dict, selection: list | None = None
                 ) -> dict[str, dict[str, Any]]:
    from dagster import materialize

    result = materialize(assets, resources=resources, run_config={"ops": config}, selection=selection)
    assert result.success
    return {e.event_specific_data.materialization.asset_key.to_user_string():
            {k: v.value for k, v in e.event_specific_data.materialization.metadata.items()}
            for e in result.get_asset_materialization_events()}


def plain_loop(paths: list[Path], k: int) -> dict[str, float]:
    """One fresh process, timed from before its TensorFlow import: build the model and trace it, decode, batched
    predict, scikit-learn scaler + PCA. `cold_seconds` counts all of it, as the Spark run's cold wall counts its
    workers' imports and builds; `seconds` counts decode + predict + PCA only; and bare predict images/s on the
    decoded arrays."""
    started = time.perf_counter()
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    from mlassets.models.mobilenet_features import build_feature_model, decoded_batches, resolve_weights
    from mlassets.models.worker_imports import import_keras

    import_keras(THREADS)  # as the workers are set up
    imported = time.perf_counter()
    model = build_feature_model(resolve_weights("none", 0))
    built = time.perf_counter()
    model.predict_on_batch(np.zeros((32, 224, 224, 3), np.float32))  # trace once, as the warm UDF has
    ready = time.perf_counter()
    contents = [p.read_bytes() for p in paths]
    arrays = np.concatenate([batch for _, batch in decoded_batches(contents, 32)])
    predicting = time.perf_counter()
    features = np.concatenate([model.predict_on_batch(arrays[i:i + 32]) for i in range(0, len(arrays), 32)])
    predict_seconds = time.perf_counter() - predicting
    PCA(n_components=min(k, len(paths) - 1), svd_solver="full").fit(StandardScaler().fit_transform(features))
    done = time.perf_counter()
    # The decode again as the UDF runs it (bytes in memory, a batch at a time, Pillow already loaded): the first
    # pass above also read the files and stacked the arrays.
    decoding = time.perf_counter()
    for _ in decoded_batches(contents, 32):
        pass
    decode_seconds = time.perf_counter() - decoding
    return {"cold_seconds": done - started, "seconds": done - ready,
            "bare_images_per_second": len(paths) / predict_seconds,
            "decode_seconds_per_image": decode_seconds / len(paths),
            "build_seconds": built - imported,
            # the first call's tracing: its time less a traced call's on as many images
            "first_trace_seconds": (ready - built) - predict_seconds * 32 / len(paths)}


def spark_floor_seconds(session: Any, lake: Any, partitions: int) -> float:
    """Seconds of the feature job with a UDF that returns zeros instead of decoding and predicting: the same files
    read, the same rows through Arrow both ways and into the cache, the same summary; best of two, warm."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, FloatType

    from mlassets.assets.fruits.features import image_features, summarise
    from mlassets.models.mobilenet_features import FEATURE_SIZE, feature_lists

    @F.arrow_udf(ArrayType(FloatType()))
    def zeros(contents: Iterator[pa.Array]) -> Iterator[pa.Array]:
        for batch in contents:
            yield feature_lists(len(batch), np.arange(len(batch)), np.zeros((len(batch), FEATURE_SIZE), np.float32))

    best = float("inf")
    for _ in range(2):
        computed = image_features(session, lake, partitions, zeros)
        started = time.perf_counter()
        summarise(computed)
        best = min(best, time.perf_counter() - started)
        computed.unpersist()
    return best


def sklearn_pca_seconds(features: np.ndarray, k: int) -> float:
    """Seconds of the asset's own scikit-learn reference (StandardScaler + full-SVD PCA) on the feature matrix: the
    PCA fit's ceiling."""
    from mlassets.assets.fruits.pca import components_for, sklearn_explained_variance

    started = time.perf_counter()
    sklearn_explained_variance(features, components_for(k, *features.shape))
    return time.perf_counter() - started


def svd_seconds(dims: int) -> float:
    """Seconds of LAPACK's dgesdd (scipy's OpenBLAS) on a dims x dims covariance: the full SVD that MLlib's PCA fit
    runs on the driver whatever k is, so the floor under `fruit_pca_fit_seconds` on this machine."""
    from scipy.linalg import svd

    rng = np.random.default_rng(0)
    sample = rng.standard_normal((320, dims))
    covariance = np.cov(sample, rowvar=False)
    started = time.perf_counter()
    svd(covariance, lapack_driver="gesdd")
    return time.perf_counter() - started


def run(stack: Any = None) -> None:
    from mlassets.assets.fruits import fruit_features, fruit_images, fruit_pca
    from mlassets.datasets.fruits360 import find_fruits
    from mlassets.resources import DatasetsResource, LakeParquetIOManager, LakeResource, SparkResource

    source = find_fruits(sample_data_dir())
    classes = sorted(p for p in source.iterdir() if p.is_dir())[:CLASSES]
    paths = [f for c in classes for f in sorted(c.iterdir())[:PER_CLASS]]
    with tempfile.TemporaryDirectory() as tmp:
        lake = LakeResource(root=str(Path(tmp) / "lake"))
        spark = SparkResource(spark_config={
            "spark.master": "local[*]", "spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false", "spark.driver.memory": "4g", "spark.sql.shuffle.partitions": "8",
            "spark.sql.execution.arrow.pyspark.enabled": "true"})
        resources = {"datasets": DatasetsResource(data_dir=str(source)), "lake": lake, "spark": spark,
                     "io_manager": LakeParquetIOManager(lake=lake, spark=spark)}
        config = {"fruit_images": {"config": {"max_images_per_class": PER_CLASS, "max_classes": CLASSES}},
                  "fruit_features": {"config": {"weights": "none", "threads_per_worker": THREADS}}}
        spark.spark_session  # the session start is not part of either figure
        started = time.perf_counter()
        with PeakTreeRss() as cold_rss:
            cold = _materialize([fruit_images, fruit_features, fruit_pca], resources, config)
        wall = time.perf_counter() - started
        with PeakTreeRss() as warm_rss:
            warm = _materialize([fruit_features], resources,
                                {"fruit_features": config["fruit_features"]})["fruit_features"]
        floors = {"warm": spark_floor_seconds(spark.spark_session, lake, warm["partitions"])}
        floors["cold"] = floors["warm"]  # plus TensorFlow's build and first trace of the model, below
        # MLlib's own Pipeline.fit on the same features in the same session, for the PCA fit's comparison
        mllib = _materialize([fruit_features, fruit_pca], resources, {"fruit_pca": {"config": {"fit": "mllib"}}},
                             selection=[fruit_pca])["fruit_pca"]
        matrix = np.asarray(lake.read_parquet("fruit_features")["features"].tolist(), dtype=np.float64)
        # The warm job again over every sample image: Spark's fixed cost per job (planning, launching the task,
        # caching the rows; the floor below measures it) spread over six times the images.
        _materialize([fruit_images], resources, {"fruit_images": {"config": {"max_images_per_class": None}}})
        with PeakTreeRss() as all_rss:
            every = _materialize([fruit_features], resources,
                                 {"fruit_features": config["fruit_features"]})["fruit_features"]
        floors["warm_all_images"] = spark_floor_seconds(spark.spark_session, lake, every["partitions"])
        spark.spark_session.stop()
    rows = cold["fruit_features"]["dagster/row_count"]
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a fresh process: TensorFlow not yet imported
        loop = pool.apply(plain_loop, (paths, cold["fruit_pca"]["k_requested"]))
    bare_images_per_second = loop["bare_images_per_second"]
    features, pca = cold["fruit_features"], cold["fruit_pca"]
    report("fruits_320_images_features_pca_parquet", wall, loop["cold_seconds"], "s", images=rows,
           original_emr_seconds=ORIGINAL_EMR_SECONDS,
           plain_loop_after_startup_seconds=round(loop["seconds"], 2), steps={
               "fruit_features_asset_seconds": features.get("asset_seconds"),
               "fruit_features_seconds": features["feature_seconds"],
               "worker_warmup_seconds": features.get("worker_warmup_seconds"),
               "fruit_pca_fit_seconds": pca["fit_seconds"],
               "fruit_pca_save_seconds": pca.get("save_seconds"),
               "warmup_model_builds": features.get("warmup_model_builds"),
               "model_builds": features["model_builds"],
               "udf_keras_imports": features.get("udf_keras_imports"),
               "threads_per_worker": features.get("threads_per_worker")},
           ceiling_is="plain single-process loop in a fresh process: TensorFlow import + model build + decode + "
                      "batched predict + sklearn scaler/PCA", **cold_rss.mib(),
           rss_of="this process (the driver) + Spark JVM + Python workers, summed, sampled every 0.2 s")
    report("fruit_pca_fit_seconds", pca["fit_seconds"], sklearn_pca_seconds(matrix, pca["k_requested"]), "s",
           rows=len(matrix), k=pca["k"], fit=pca.get("fit"), goal_seconds=2.0,
           collect_seconds=pca.get("collect_seconds"), pipeline_fit_seconds=pca.get("pipeline_fit_seconds"),
           save_seconds=pca.get("save_seconds"), lapack=pca.get("lapack"),
           mllib_fit_seconds=mllib["fit_seconds"], mllib_pipeline_fit_seconds=mllib["pipeline_fit_seconds"],
           mllib_save_seconds=mllib["save_seconds"], mllib_lapack=mllib["lapack"],
           svd_1280_scipy_seconds=round(svd_seconds(1280), 2),
           ceiling_is="scikit-learn StandardScaler + PCA (full SVD) on the same features, this process; fit_seconds "
                      "is the asset's collect + fit, the save of the PipelineModel apart")
    for name, meta, rss in (("cold", cold["fruit_features"], cold_rss), ("warm", warm, warm_rss),
                            ("warm_all_images", every, all_rss)):
        images = meta["dagster/row_count"]
        # what the job cannot do without: bare predict, the decode (per image as over the 320), Spark's own cost
        parts = {"bare_predict_seconds": images / bare_images_per_second,
                 "decode_seconds": images * loop["decode_seconds_per_image"],
                 "spark_floor_seconds": floors[name]}
        if name == "cold":  # the worker builds and traces the model as the loop does (on a thread, during the read)
            parts.update(model_build_seconds=loop["build_seconds"], first_trace_seconds=loop["first_trace_seconds"])
        floor = {k: round(v, 3) for k, v in parts.items()}
        floor["ratio_to_floor"] = round(sum(parts.values()) / meta["feature_seconds"], 4)
        report(f"fruit_features_images_per_second_{name}", meta["images_per_second"], bare_images_per_second,
               "images/s", images=images, partitions=meta["partitions"], feature_seconds=meta["feature_seconds"],
               asset_seconds=meta.get("asset_seconds"), worker_warmup_seconds=meta.get("worker_warmup_seconds"),
               warmup_model_builds=meta.get("warmup_model_builds"), model_builds=meta["model_builds"],
               udf_batches=meta["udf_batches"],
               target_ratio=TARGETS[name.split("_")[0]], **floor,
               **rss.mib(),
               ceiling_is="bare Keras MobileNetV2 predict_on_batch(32) on decoded arrays, same process kind; "
                          "ratio_to_floor: bare predict + the loop's decode of as many images + the same Spark job "
                          "with a UDF returning zeros (warm) + the loop's model build and first trace (cold only), "
                          "over the job's feature_seconds")


if __name__ == "__main__":
    run()
