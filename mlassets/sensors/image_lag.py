"""The lag sensor of `inference_records`: consumer-group lag on the image topic, read through the admin client."""

import json
import os

from dagster import (AssetKey, AssetObservation, AssetSelection, DefaultSensorStatus, MetadataValue, RunRequest,
                     SensorDefinition, SensorEvaluationContext, SensorResult, SkipReason, sensor)

from mlassets.names import IMAGE_TOPIC, INFERENCE_GROUP
from mlassets.resources import KafkaResource
from mlassets.streaming.offsets import group_lag

DEFAULT_IMAGE_LAG_THRESHOLD = 100


def build_image_data_lag_sensor(threshold: int = DEFAULT_IMAGE_LAG_THRESHOLD, topic: str = IMAGE_TOPIC,
                                group: str = INFERENCE_GROUP, minimum_interval_seconds: int = 30,
                                timeout_ms: int = 10_000) -> SensorDefinition:
    """The lag sensor of `inference_records`; MLASSETS_IMAGE_DATA_LAG_THRESHOLD (read per tick) overrides threshold."""

    @sensor(
        name=f"{topic}_lag",
        target=AssetSelection.assets("inference_records"),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=DefaultSensorStatus.STOPPED,
        description=f"Requests inference_records when consumer group {group} lags {topic} by at least the threshold "
                    "(committed vs end offsets through the admin client; never consumes).",
    )
    def lag_sensor(context: SensorEvaluationContext, kafka: KafkaResource) -> SensorResult:
        limit = int(os.environ.get("MLASSETS_IMAGE_DATA_LAG_THRESHOLD", threshold))
        lag = group_lag(kafka, topic, group, timeout_ms=timeout_ms)
        observation = AssetObservation(asset_key=topic, metadata={
            "consumer_group": group,
            "lag": lag.total,
            "lag_by_partition": MetadataValue.json({str(p): n for p, n in lag.lag.items()}),
            "end_offsets": MetadataValue.json({str(p): n for p, n in sorted(lag.end.items())}),
            "threshold": limit,
        })
        if not lag.end:
            return SensorResult(skip_reason=SkipReason(f"topic {topic} does not exist yet"), asset_events=[observation])
        run_key = lag.end_key()
        if lag.total < limit:
            return SensorResult(skip_reason=SkipReason(f"lag {lag.total} < threshold {limit}"),
                                asset_events=[observation])
        if run_key == context.cursor:
            return SensorResult(skip_reason=SkipReason(f"a run was already requested for end offsets {run_key}"),
                                asset_events=[observation])
        return SensorResult(
            run_requests=[RunRequest(run_key=run_key, asset_selection=[AssetKey("inference_records")], tags={"mlassets/lag": str(lag.total),
                                                            "mlassets/end_offsets": json.dumps(lag.end)})],
            asset_events=[observation],
            cursor=run_key,
        )

    return lag_sensor


image_data_lag = build_image_data_lag_sensor()

