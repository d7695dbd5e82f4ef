"""The SUSY MLP trained from the `trainData` topic and saved as a new version in the model store."""

import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from mlassets.automation import TRANSIENT_RETRY
from mlassets.datasets.susy import FEATURES
from mlassets.metadata import markdown_table, table_metadata
from mlassets.names import SUSY_DATABASE, SUSY_MODEL_COLLECTION, SUSY_MODEL_NAME, TRAINER_GROUP, dlq_topic
from mlassets.resources import KafkaResource, MongoResource
from mlassets.streaming.susy_messages import read_train_rows

MIN_LIFT = 0.10


class SusyModelConfig(Config):
    """Training settings of the SUSY MLP."""

    epochs: int = Field(default=5, ge=1, description="Passes over the training rows.")
    batch_size: int = Field(default=64, ge=1, description="Rows per gradient step (the original used 64).")
    learning_rate: float = Field(default=1e-3, gt=0, description="Adam learning rate.")
    seed: int = Field(default=0, description="Seed of the weight initialisation, dropout and shuffling.")
    end_offsets: dict[str, int] | None = Field(
        default=None,
        description="Read each partition up to this offset (exclusive) instead of the recorded end: the "
                    "trainData_new_rows sensor sets it to retrain on newer messages.")
    group: str = Field(default=TRAINER_GROUP, description="Consumer group that reads trainData.")
    idle_timeout_s: float = Field(default=30.0, gt=0, description="Fail when no message arrives for this long.")


def read_ranges(recorded: pd.DataFrame, end_offsets: dict[str, int] | None) -> tuple[str, dict[int, tuple[int, int]]]:
    """The topic and per-partition [start, end) to read: the recorded ranges, ends moved to end_offsets if given."""
    topics = recorded["topic"].unique()
    if len(topics) != 1:
        raise ValueError(f"susy_train_topic must name one topic, got {list(topics)}")
    ranges = {int(r.partition): (int(r.start_offset), int(r.end_offset)) for r in recorded.itertuples()}
    for partition, end in (end_offsets or {}).items():
        start = ranges.get(int(partition), (0, 0))[0]
        if end < start:
            raise ValueError(f"end offset {end} of partition {partition} is before its recorded start {start}")
        ranges[int(partition)] = (start, int(end))
    return str(topics[0]), ranges


def held_out_metrics(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Accuracy at 0.5, ROC AUC and the majority-class share of a held-out set."""
    from sklearn.metrics import roc_auc_score

    labels = np.asarray(labels).astype(int)
    positive = float(labels.mean())
    return {
        "held_out_accuracy": float(((scores >= 0.5).astype(int) == labels).mean()),
        "held_out_auc": float(roc_auc_score(labels, scores)) if 0 < positive < 1 else float("nan"),
        "majority_share": max(positive, 1 - positive),
    }


@asset(
    code_version="1",
    retry_policy=TRANSIENT_RETRY,
    check_specs=[AssetCheckSpec("held_out_accuracy", asset="susy_model", blocking=True,
                                description=f"held-out accuracy >= majority-class share + {MIN_LIFT}")],
)
def susy_model(context: AssetExecutionContext, config: SusyModelConfig, kafka: KafkaResource, mongo: MongoResource,
               susy_train_topic: pd.DataFrame,
               susy_dataset: pd.DataFrame) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
    """The model-store record (model_id, sha256, held-out metrics, offsets trained to) of the MLP trained from trainData."""
    import keras

    from mlassets.models.susy_mlp import build_susy_mlp
    from mlassets.models.susy_scorer import StandardScaler, SusyScorer

    topic, ranges = read_ranges(susy_train_topic, config.end_offsets)
    rows = read_train_rows(kafka, topic, ranges, group=config.group, idle_timeout_s=config.idle_timeout_s)
    if len(rows.labels) == 0:
        raise ValueError(f"{topic}: no valid training rows in {ranges} ({rows.dead_letters} dead letters)")
    scaler = StandardScaler.fit(rows.features)
    keras.utils.set_random_seed(config.seed)
    model = build_susy_mlp()
    model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="binary_crossentropy",
                  metrics=["accuracy"])
    history = model.fit(scaler.transform(rows.features), rows.labels.astype(np.float32), epochs=config.epochs,
                        batch_size=config.batch_size, shuffle=True, verbose=0)
    test = susy_dataset[susy_dataset["split"] == "test"]
    scores = SusyScorer(model, scaler).predict(test[list(FEATURES)].to_numpy())
    metrics = {**held_out_metrics(test["label"].to_numpy(), scores), "train_rows": int(len(rows.labels)),
               "held_out_rows": int(len(test)), "dead_letters": rows.dead_letters,
               "final_train_loss": float(history.history["loss"][-1])}
    offsets = [{"topic": topic, "partition": p, "start": low, "end": high} for p, (low, high) in sorted(rows.ranges.items())]
    threshold = metrics["majority_share"] + MIN_LIFT
    passed = metrics["held_out_accuracy"] >= threshold
    record = mongo.model_store(SUSY_DATABASE, SUSY_MODEL_COLLECTION).save(
        SUSY_MODEL_NAME, model, extras=scaler.extras(), metrics=metrics, checks={"held_out_accuracy": passed},
        code_version=context.assets_def.code_versions_by_key[context.asset_key],
        metadata={"offsets": offsets, "dead_letter_reasons": rows.reasons, "config": config.model_dump(),
                  "run_id": context.run.run_id},
    )
    frame = pd.DataFrame([{
        "model_id": record.model_id, "sha256": record.sha256, "created_at": record.created_at,
        "held_out_accuracy": metrics["held_out_accuracy"], "held_out_auc": metrics["held_out_auc"],
        "train_rows": metrics["train_rows"], "topic": topic,
        "trained_to": json.dumps({str(o["partition"]): o["end"] for o in offsets}),
    }])
    losses = pd.DataFrame({"epoch": np.arange(1, config.epochs + 1), "loss": history.history["loss"],
                           "accuracy": history.history["accuracy"]})
    yield Output(frame, metadata={
        **table_metadata(frame), "model_id": record.model_id, "parameters": int(model.count_params()),
        **{k: v for k, v in metrics.items() if k != "dead_letters"},
        "dead_letters": rows.dead_letters, "dead_letter_topic": dlq_topic(topic),
        "dead_letter_reasons": MetadataValue.json(rows.reasons),
        "trained_to_offsets": MetadataValue.json({"topic": topic, "offsets": {str(o["partition"]): o["end"]
                                                                              for o in offsets}}),
        "offsets_read": MetadataValue.md(markdown_table(pd.DataFrame(offsets))),
        "training": MetadataValue.md(markdown_table(losses)),
        "read_seconds": round(rows.seconds, 3),
    })
    yield AssetCheckResult(check_name="held_out_accuracy", passed=passed,
                           metadata={"accuracy": metrics["held_out_accuracy"], "threshold": threshold})
