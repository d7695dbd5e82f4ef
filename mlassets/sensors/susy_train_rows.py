"""The continual-learning sensor: messages on trainData beyond those the latest susy_model saw request a retrain."""

import json

from dagster import (
    AssetKey,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorEvaluationContext,
    SkipReason,
    sensor,
)
from mlassets.names import TRAINER_GROUP
from mlassets.resources import KafkaResource
from mlassets.streaming.offsets import group_lag

MODEL_KEY = AssetKey("susy_model")


def trained_offsets(context: SensorEvaluationContext) -> tuple[str, dict[int, int]] | None:
    """The topic and per-partition end offsets the latest susy_model materialisation trained on."""
    event = context.instance.get_latest_materialization_event(MODEL_KEY)
    materialization = event.asset_materialization if event else None
    value = materialization.metadata.get("trained_to_offsets") if materialization else None
    if value is None:
        return None
    data = value.value
    return data["topic"], {int(p): int(e) for p, e in data["offsets"].items()}


@sensor(
    name="trainData_new_rows",
    asset_selection=AssetSelection.assets(MODEL_KEY),
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.STOPPED,
    description="Retrains susy_model when trainData holds messages beyond those the latest model saw.",
)
def trainData_new_rows(context: SensorEvaluationContext, kafka: KafkaResource):
    """Compare trainData's end offsets with the offsets recorded by the latest susy_model."""
    trained = trained_offsets(context)
    if trained is None:
        return SkipReason("susy_model has never been materialised with recorded offsets; nothing to continue from")
    topic, seen = trained
    ends = group_lag(kafka, topic, TRAINER_GROUP, timeout_ms=10_000).end  # admin requests only, bounded
    if not ends:
        return SkipReason(f"topic {topic} does not exist")
    new_rows = sum(max(end - seen.get(p, 0), 0) for p, end in ends.items())
    if new_rows == 0:
        return SkipReason(f"no messages on {topic} beyond the latest model's offsets")
    offsets = {str(p): max(end, seen.get(p, 0)) for p, end in sorted(ends.items())}
    context.update_cursor(json.dumps(offsets, sort_keys=True))
    return RunRequest(
        run_key=f"{topic}:" + ",".join(f"{p}={e}" for p, e in offsets.items()),
        run_config={"ops": {"susy_model": {"config": {"end_offsets": offsets}}}},
        tags={"mlassets/trigger": "trainData_new_rows", "mlassets/new_rows": str(new_rows)},
    )
