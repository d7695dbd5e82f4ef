"""Distributed scoring of the scaled SUSY test chunks with the model version from lineage, and its pooled summary."""

import base64
import functools
import io
import time
from collections.abc import Iterator
from typing import Literal

import numpy as np
import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    BackfillPolicy,
    Config,
    MaterializeResult,
    MetadataValue,
    Output,
    asset,
)
from pydantic import Field
from pyspark import Broadcast
from pyspark.sql import DataFrame as SparkDF
from pyspark.sql import SparkSession

from mlassets.assets.susy.model import MIN_LIFT
from mlassets.assets.susy.scaled import ASSET_NAME as CHUNKS_ASSET
from mlassets.automation import (FOLLOWS_INPUTS, RESCORE_ON_NEW_MODEL, SPARK_POOL, TRANSIENT_RETRY,
                                 refused_model_fails_at_once)
from mlassets.datasets.susy import FEATURES
from mlassets.metadata import column_schema, markdown_table
from mlassets.names import SUSY_DATABASE, SUSY_MODEL_COLLECTION
from mlassets.models.susy_batch_scoring import SCORE_COLUMNS, SCORE_SCHEMA, row_groups, score_frames, score_row_groups
from mlassets.models.susy_metrics import histogram_auc
from mlassets.partitions import SUSY_CHUNKS
from mlassets.resources import LakeResource, MongoResource, SparkResource

ASSET_NAME = "susy_evaluation"
COUNTS = ["rows", "tp", "fp", "tn", "fn"]
ARROW_BATCH_CONF = ("spark.sql.execution.arrow.maxRecordsPerBatch", "spark.sql.execution.arrow.maxBytesPerBatch")
NO_BYTE_LIMIT = 2**31 - 1  # Int.MaxValue: Spark's "no byte limit" value for Arrow batches to Python


class SusyEvaluationConfig(Config):
    """How the chunks are scored on Spark."""

    arrow_batch_rows: int = Field(default=65_536, ge=1_000, description="Rows per Arrow batch handed to the model.")
    threads_per_worker: int = Field(default=1, ge=0,
                                    description="BLAS (or TensorFlow) threads of each Python worker (0: the default).")
    histogram_bins: int = Field(default=4096, ge=10, description="Score histogram bins used for the pooled AUC.")
    reader: Literal["arrow", "spark"] = Field(
        default="arrow",
        description="arrow: one task per Parquet row group of the chunks, which reads it from the lake with pyarrow "
                    "(the executors reach the lake themselves: S3 credentials from the lake resource or the "
                    "executor's own); spark: Spark reads the chunks and hands Arrow batches to mapInPandas.")


def pooled(frame: pd.DataFrame) -> dict[str, float]:
    """Accuracy, AUC and counts over all rows of the given chunks (weighted by rows, not a mean of chunk means)."""
    totals = {c: int(frame[c].sum()) for c in COUNTS}
    positive_hist = np.sum(np.stack(frame["positive_hist"].to_numpy()), axis=0)
    negative_hist = np.sum(np.stack(frame["negative_hist"].to_numpy()), axis=0)
    positives = totals["tp"] + totals["fn"]
    return {
        **totals,
        "accuracy": (totals["tp"] + totals["tn"]) / max(totals["rows"], 1),
        "auc": histogram_auc(positive_hist, negative_hist),
        "majority_share": max(positives, totals["rows"] - positives) / max(totals["rows"], 1),
    }


def per_chunk(summaries: pd.DataFrame, model_id: str) -> pd.DataFrame:
    """Sum the scoring job's rows (one per chunk of each Spark partition) into one row per chunk."""
    rows = []
    for chunk, group in summaries.groupby("chunk", sort=True):
        stats = pooled(group)
        rows.append({
            "chunk": chunk, "model_id": model_id, **{c: stats[c] for c in COUNTS},
            "accuracy": stats["accuracy"], "auc": stats["auc"],
            "positive_hist": np.sum(np.stack(group["positive_hist"].to_numpy()), axis=0).astype(np.int64),
            "negative_hist": np.sum(np.stack(group["negative_hist"].to_numpy()), axis=0).astype(np.int64),
        })
    return pd.DataFrame(rows)


def score_with_arrow(chunks: list[str], config: SusyEvaluationConfig, session: SparkSession, lake: LakeResource,
                     model_id: str, payload: Broadcast) -> tuple[pd.DataFrame, int]:
    """Spark schedules one task per row group of the chunks' Parquet files; each reads its rows with pyarrow."""
    filesystem = lake.filesystem()
    groups = row_groups(filesystem, {chunk: lake.parquet_files(CHUNKS_ASSET, chunk) for chunk in chunks})
    score = functools.partial(score_row_groups, model_id=model_id, broadcast=payload, filesystem=filesystem,
                              threads=config.threads_per_worker, bins=config.histogram_bins,
                              batch_rows=config.arrow_batch_rows)
    rows = session.sparkContext.parallelize(groups, max(len(groups), 1)).mapPartitions(score).collect()
    return pd.DataFrame(rows, columns=SCORE_COLUMNS), len(groups)


def score_with_spark(config: SusyEvaluationConfig, session: SparkSession, chunks: SparkDF, model_id: str,
                     payload: Broadcast) -> tuple[pd.DataFrame, int]:
    """Spark reads the chunks and hands them to the scorer as Arrow batches of `arrow_batch_rows` (mapInPandas)."""
    previous = {key: session.conf.get(key, None) for key in ARROW_BATCH_CONF}
    # Batches are bounded by rows (65,536 x 20 columns is about 5 MB). Without a byte limit Spark skips the Arrow size
    # check it otherwise makes after every row: 40% of the JVM's CPU in this job.
    session.conf.set("spark.sql.execution.arrow.maxRecordsPerBatch", str(config.arrow_batch_rows))
    session.conf.set("spark.sql.execution.arrow.maxBytesPerBatch", str(NO_BYTE_LIMIT))
    score = functools.partial(score_frames, model_id=model_id, broadcast=payload,
                              threads=config.threads_per_worker, bins=config.histogram_bins)
    try:
        selected = chunks.select("chunk", "label", *FEATURES)
        return selected.mapInPandas(score, SCORE_SCHEMA).toPandas(), selected.rdd.getNumPartitions()
    finally:
        for key, value in previous.items():
            if value is None:
                session.conf.unset(key)
            else:
                session.conf.set(key, value)


@asset(
    partitions_def=SUSY_CHUNKS,
    backfill_policy=BackfillPolicy.single_run(),
    automation_condition=RESCORE_ON_NEW_MODEL,
    pool=SPARK_POOL,
    retry_policy=TRANSIENT_RETRY,
    check_specs=[AssetCheckSpec("all_rows_scored", asset=ASSET_NAME, blocking=True,
                                description="every row of the chunks in the run was scored exactly once")],
)
def susy_evaluation(context: AssetExecutionContext, config: SusyEvaluationConfig, spark: SparkResource,
                    lake: LakeResource, mongo: MongoResource, susy_test_scaled: SparkDF,
                    susy_model: pd.DataFrame) -> MaterializeResult:
    """Per chunk: the model_id used, confusion counts at 0.5, accuracy, AUC and the score histograms behind them."""
    model_id = str(susy_model["model_id"].iloc[0])
    with refused_model_fails_at_once():
        architecture, blob, record = mongo.model_store(SUSY_DATABASE, SUSY_MODEL_COLLECTION).load_bytes(model_id)
    session = spark.spark_session
    payload = session.sparkContext.broadcast((architecture, blob, record.sha256))
    start = time.perf_counter()
    try:
        if config.reader == "arrow":
            summaries, tasks = score_with_arrow(context.partition_keys, config, session, lake, model_id, payload)
        else:
            summaries, tasks = score_with_spark(config, session, susy_test_scaled, model_id, payload)
    finally:
        payload.destroy()
    seconds = time.perf_counter() - start
    expected = {r["chunk"]: int(r["count"]) for r in susy_test_scaled.groupBy("chunk").count().collect()}
    chunks = per_chunk(summaries, model_id)
    for row in chunks.itertuples(index=False):
        lake.write_parquet(chunks[chunks["chunk"] == row.chunk].reset_index(drop=True), ASSET_NAME, row.chunk)
    stats = pooled(chunks) if len(chunks) else {c: 0 for c in COUNTS}
    workers = (summaries.groupby("worker_pid").agg(batches=("batches", "sum"), rows=("rows", "sum"),
                                                   model_loads=("model_loads", "max")).reset_index())
    scored = dict(zip(chunks["chunk"], chunks["rows"]))
    missing = sorted(set(context.partition_keys) - set(scored))
    return MaterializeResult(
        metadata={
            "dagster/row_count": int(stats["rows"]),
            "dagster/column_schema": column_schema(chunks),
            "model_id": model_id,
            "rows_scored": int(stats["rows"]),
            "rows_per_s": round(stats["rows"] / max(seconds, 1e-9), 1),
            "seconds": round(seconds, 3),
            "accuracy": stats.get("accuracy", float("nan")),
            "auc": stats.get("auc", float("nan")),
            "chunks": MetadataValue.md(markdown_table(chunks[["chunk", *COUNTS, "accuracy", "auc"]])),
            "workers": MetadataValue.md(markdown_table(workers)),
            "max_model_loads_per_worker": int(workers["model_loads"].max()) if len(workers) else 0,
            "scoring_engine": ",".join(sorted(summaries["engine"].unique())),
            "arrow_batch_rows": config.arrow_batch_rows,
            "reader": config.reader,
            "tasks": tasks,
        },
        check_results=[AssetCheckResult(
            check_name="all_rows_scored", passed=scored == expected and not missing,
            metadata={"scored": MetadataValue.json(scored), "in_chunks": MetadataValue.json(expected),
                      "chunks_without_rows": MetadataValue.json(missing)},
        )],
    )


def roc_png(positive_hist: np.ndarray, negative_hist: np.ndarray, auc: float) -> str:
    """A markdown image (embedded PNG) of the ROC curve drawn from the pooled score histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tpr = np.concatenate([[0.0], np.cumsum(positive_hist[::-1]) / max(positive_hist.sum(), 1)])
    fpr = np.concatenate([[0.0], np.cumsum(negative_hist[::-1]) / max(negative_hist.sum(), 1)])
    fig, ax = plt.subplots(figsize=(4, 4), dpi=80)
    ax.plot(fpr, tpr, label=f"AUC {auc:.4f}")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(fig)
    return f"![ROC](data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')})"


@asset(automation_condition=FOLLOWS_INPUTS,
       check_specs=[AssetCheckSpec("pooled_accuracy", asset="susy_evaluation_summary",
                                   description=f"pooled accuracy >= majority-class share + {MIN_LIFT}, one model")])
def susy_evaluation_summary(susy_evaluation: pd.DataFrame) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
    """One row per chunk plus an `all` row: rows, confusion counts, accuracy and AUC pooled over rows."""
    stats = pooled(susy_evaluation)
    table = susy_evaluation[["chunk", "model_id", *COUNTS, "accuracy", "auc"]].sort_values("chunk")
    models = sorted(susy_evaluation["model_id"].unique())
    total = {"chunk": "all", "model_id": ",".join(models), **{c: stats[c] for c in COUNTS},
             "accuracy": stats["accuracy"], "auc": stats["auc"]}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    confusion = pd.DataFrame({"truth": ["signal", "background"],
                              "predicted signal": [stats["tp"], stats["fp"]],
                              "predicted background": [stats["fn"], stats["tn"]]})
    positive_hist = np.sum(np.stack(susy_evaluation["positive_hist"].to_numpy()), axis=0)
    negative_hist = np.sum(np.stack(susy_evaluation["negative_hist"].to_numpy()), axis=0)
    yield Output(table, metadata={
        "dagster/row_count": len(table),
        "dagster/column_schema": column_schema(table),
        "preview": MetadataValue.md(markdown_table(table)),
        "rows": stats["rows"], "accuracy": stats["accuracy"], "auc": stats["auc"],
        "majority_share": stats["majority_share"], "model_ids": MetadataValue.json(models),
        "confusion": MetadataValue.md(markdown_table(confusion)),
        "roc": MetadataValue.md(roc_png(positive_hist, negative_hist, stats["auc"])),
    })
    threshold = stats["majority_share"] + MIN_LIFT
    yield AssetCheckResult(check_name="pooled_accuracy", passed=stats["accuracy"] >= threshold and len(models) == 1,
                           metadata={"accuracy": stats["accuracy"], "threshold": threshold,
                                     "model_ids": MetadataValue.json(models)})
