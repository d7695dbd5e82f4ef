"""MobileNetV2 features of the fruit images, computed by Spark with an iterator Arrow UDF (model built once per worker)."""

import math
import time
from collections.abc import Callable, Iterator

import pandas as pd
import pyarrow as pa
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
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
from pyspark.sql import Column, SparkSession
from pyspark.sql import DataFrame as SparkDF
from pyspark.sql import functions as F
from pyspark.sql.types import ArrayType, FloatType

from mlassets.assets.fruits.images import ASSET as IMAGES_ASSET
from mlassets.assets.fruits.images import IMAGES_DIR, MANIFEST_DIR, fruit_images
from mlassets.automation import FOLLOWS_INPUTS, SPARK_POOL, TRANSIENT_RETRY
from mlassets.metadata import markdown_table
from mlassets.models.mobilenet_features import FEATURE_SIZE, WEIGHT_CHOICES, FeatureWeights, broadcast_weights
from mlassets.resources import LakeResource, SparkResource
from mlassets.stack.executor_env import TENSORFLOW

ASSET = "fruit_features"
SCHEMA = TableSchema(columns=[
    TableColumn("path", "string", description="the image's location as Spark names it (file: or s3a:)"),
    TableColumn("label", "string", description="the class folder name"),
    TableColumn("features", f"array<float>[{FEATURE_SIZE}]", description="MobileNetV2 global-average-pooled output"),
])


class FruitFeaturesConfig(Config):
    """How MobileNetV2 features are computed."""

    weights: str = Field(default="auto", description=(
        f"One of {', '.join(WEIGHT_CHOICES)} or a path to a .h5 weights file. `imagenet` needs "
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5 in the Keras cache ($KERAS_HOME/models "
        "or ~/.keras/models) and fails when it is absent; `none` is a seeded random initialisation; `auto` takes "
        "ImageNet when cached and otherwise random weights, recorded in the metadata and failing the "
        "`pretrained_weights` warning check."))
    seed: int = Field(default=0, description="Seed of the random initialisation (weights `none` or `auto` without cache).")
    batch_size: int = Field(default=32, ge=1, description="Images per MobileNetV2 call inside the UDF.")
    partitions: int = Field(default=0, ge=0, description=(
        "Spark tasks computing features. 0 chooses: in local mode one, whose TensorFlow runs a batch on every core (a "
        "second worker would import TensorFlow and hold the model again, 1.3 GB, to share the same cores); on a "
        "cluster the default parallelism (a task per executor core) or more, with at most images_per_partition "
        "images each."))
    images_per_partition: int = Field(default=1000, ge=1, description=(
        "On a cluster, with partitions 0: the most images a task computes."))
    threads_per_worker: int = Field(default=0, ge=0, description=(
        "TensorFlow intra-op threads of each Python worker; 0 keeps TensorFlow's default (every core). Spark runs a "
        "task per core, so on executors with many cores 1 keeps the workers from oversubscribing them."))


def feature_partitions(config: FruitFeaturesConfig, master: str, parallelism: int, images: int) -> int:
    """How many Spark tasks compute the features of `images` images (see FruitFeaturesConfig.partitions)."""
    if config.partitions:
        return config.partitions
    if master.startswith("local"):
        return 1
    return max(parallelism, math.ceil(images / config.images_per_partition))


def warm_workers(session: "object", partitions: int, threads: int, weights_sha256: str,
                 shipped: Callable[[], FeatureWeights], batch_size: int) -> tuple[float, int]:
    """Seconds an Arrow UDF job took to import Keras in `partitions` Python workers, and how many of them started
    building the feature model (of the `shipped` weights) on a thread."""
    # The feature UDF's tasks reuse these workers (Spark keeps a pool per kind of runner: an RDD job would warm
    # workers the UDF never gets), and their model builds while the feature job lists and reads the images.

    @F.arrow_udf("long")
    def prepare_worker(ids: pa.Array) -> pa.Array:
        from mlassets.models.mobilenet_features import build_in_background

        building = build_in_background(weights_sha256, shipped, threads, batch_size) is not None
        return pa.array([int(building)] * len(ids), pa.int64())

    started = time.perf_counter()
    builds = session.range(0, partitions, 1, partitions).select(prepare_worker("id").alias("builds")).collect()
    return time.perf_counter() - started, sum(row.builds for row in builds)


def feature_udf(weights_sha256: str, shipped: Callable[[], FeatureWeights], batch_size: int, threads: int,
                builds: "object", batches: "object", cold_imports: "object"):
    """The iterator Arrow UDF: image bytes -> float32[1280] (null when undecodable), from the model of the `shipped`
    weights (checked against `weights_sha256`)."""
    # Arrow, not pandas: a pandas UDF's return made each vector a Python list of 1,280 scalars first (50-80 ms per
    # 320). What it calls lives in mlassets.models: importing this module in a worker imports Dagster (1.0 s).

    @F.arrow_udf(ArrayType(FloatType()))
    def mobilenet_features(contents: Iterator[pa.Array]) -> Iterator[pa.Array]:
        import sys

        from mlassets.models.mobilenet_features import cached_model, feature_lists, feature_matrix

        cold = "keras" not in sys.modules  # this worker was not warmed by warm_workers
        model, built = cached_model(weights_sha256, shipped, threads)
        if built:
            builds.add(1)
            if cold:
                cold_imports.add(1)
        for batch in contents:
            batches.add(1)
            yield feature_lists(len(batch), *feature_matrix(model, batch.to_pylist(), batch_size))

    return mobilenet_features


def image_features(session: SparkSession, lake: LakeResource, partitions: int, udf: Callable[[str], Column]
                   ) -> SparkDF:
    """fruit_images' copies in the lake (recursive) in `partitions` tasks as path, label and `udf(content)` features,
    cached when first computed."""
    images = (session.read.format("binaryFile").option("recursiveFileLookup", "true")
              .load(lake.spark_uri(IMAGES_ASSET, IMAGES_DIR)))
    listed = images.rdd.getNumPartitions()
    # binaryFile packs ~30 small files per partition: merge them (no shuffle) or spread them to `partitions` tasks.
    images = images.coalesce(partitions) if listed >= partitions else images.repartition(partitions)
    return images.select(
        "path",
        F.element_at(F.split("path", "/"), -2).alias("label"),
        udf("content").alias("features"),
    ).persist()


def summarise(computed: SparkDF) -> pd.DataFrame:
    """Per image: path, label, whether its features are missing, of the wrong size or not finite, and their min and
    max; the one job that computes and caches `computed`."""
    low, high = F.array_min("features"), F.array_max("features")
    return computed.select(
        "path", "label",
        F.col("features").isNull().alias("missing"),
        (F.size("features") != FEATURE_SIZE).alias("wrong_size"),
        # array_max ranks NaN above every number, so a NaN anywhere is the max: the answer of a lambda over every
        # element (`exists`), which Spark would interpret element by element. Empty arrays (null max) are finite.
        F.coalesce(F.isnan(high) | (F.abs(high) == float("inf")) | (F.abs(low) == float("inf")),
                   F.lit(False)).alias("not_finite"),
        low.alias("min"),
        high.alias("max"),
    ).toPandas()


@asset(
    code_version="1",
    deps=[fruit_images],
    automation_condition=FOLLOWS_INPUTS,
    pool=SPARK_POOL,
    retry_policy=TRANSIENT_RETRY,
    check_specs=[
        AssetCheckSpec("feature_vectors", asset=ASSET,
                       description=f"every row has {FEATURE_SIZE} finite features and every image decoded"),
        AssetCheckSpec("pretrained_weights", asset=ASSET,
                       description="the features come from pretrained (ImageNet or file) weights, not a random init"),
    ],
)
def fruit_features(context: AssetExecutionContext, config: FruitFeaturesConfig, lake: LakeResource,
                   spark: SparkResource) -> Iterator[Output[SparkDF] | AssetCheckResult]:
    """One row per fruit image: path, label and its MobileNetV2 (no top, average pooled) features array<float>[1280]."""
    from mlassets.models.mobilenet_features import feature_weights, resolve_weights

    choice = resolve_weights(config.weights, config.seed)
    (context.log.info if choice.pretrained else context.log.warning)(f"fruit_features weights: {choice.note}")
    asset_started = time.perf_counter()
    session = spark.session_for(TENSORFLOW)  # on a cluster the executors need Keras
    sc = session.sparkContext
    expected = len(lake.read_parquet(IMAGES_ASSET, MANIFEST_DIR, columns=["path"]))
    partitions = feature_partitions(config, sc.master, sc.defaultParallelism, expected)
    weights = feature_weights(choice)
    shipped = broadcast_weights(sc.broadcast(weights.h5), weights)
    # The Python workers import TensorFlow (3.5 CPU seconds each) before the UDF's tasks reach them, then build the
    # model on a thread while the feature job lists and reads the images.
    try:
        warmup_seconds, warmup_builds = warm_workers(session, partitions, config.threads_per_worker, weights.sha256,
                                                     shipped, config.batch_size)
    except Exception as exc:  # only a head start: the UDF imports and builds what it needs anyway
        context.log.warning(f"fruit_features: warming the Python workers failed ({exc}); they start cold")
        warmup_seconds, warmup_builds = -1.0, 0
    builds, batches, cold_imports = sc.accumulator(0), sc.accumulator(0), sc.accumulator(0)
    udf = feature_udf(weights.sha256, shipped, config.batch_size, config.threads_per_worker, builds, batches,
                      cold_imports)
    computed = image_features(session, lake, partitions, udf)
    computing = time.perf_counter()
    summary = summarise(computed)
    seconds, total = time.perf_counter() - computing, len(summary)
    undecodable = sorted(summary.loc[summary["missing"], "path"])
    for path in undecodable:
        context.log.warning(f"fruit_features: {path} does not decode as an image; left out")
    features = computed.where(F.col("features").isNotNull())
    decoded = summary[~summary["missing"]]
    per_class = decoded.groupby("label").size().rename("count").reset_index()
    rows = len(decoded)
    wrong_size, not_finite = int(decoded["wrong_size"].sum()), int(decoded["not_finite"].sum())
    stats = {"min": decoded["min"].min() if rows else None, "max": decoded["max"].max() if rows else None}
    yield Output(
        features,
        metadata={
            "dagster/row_count": rows,
            "dagster/column_schema": SCHEMA,
            "images_expected": expected,
            "undecodable": MetadataValue.md("\n".join(f"- {p}" for p in undecodable) or "none"),
            "weights_requested": config.weights,
            "weights_used": choice.source,
            "weights_note": choice.note,
            "weights_sha256": weights.sha256,
            "seed": config.seed,
            "classes": len(per_class),
            "per_class": MetadataValue.md(markdown_table(per_class, max_rows=200)),
            "partitions": partitions,
            "threads_per_worker": config.threads_per_worker,
            "udf_batches": int(batches.value),
            "warmup_model_builds": warmup_builds,
            "model_builds": int(builds.value),
            "udf_keras_imports": int(cold_imports.value),
            "feature_min": float(stats["min"] or 0.0),
            "feature_max": float(stats["max"] or 0.0),
            "worker_warmup_seconds": round(warmup_seconds, 2),
            "asset_seconds": round(time.perf_counter() - asset_started, 2),
            "feature_seconds": round(seconds, 2),
            "images_per_second": round(total / seconds, 2) if seconds > 0 else 0.0,
        },
    )
    yield AssetCheckResult(
        check_name="feature_vectors",
        passed=rows == expected and wrong_size == 0 and not_finite == 0 and not undecodable,
        metadata={"rows": rows, "expected": expected, "wrong_size": wrong_size, "not_finite": not_finite,
                  "undecodable": len(undecodable)},
    )
    yield AssetCheckResult(
        check_name="pretrained_weights", passed=choice.pretrained, severity=AssetCheckSeverity.WARN,
        metadata={"weights_used": choice.source, "note": choice.note},
    )
