"""Sensors of the code location: Kafka offsets that request runs."""

from dagster import SensorDefinition

from mlassets.sensors.image_lag import DEFAULT_IMAGE_LAG_THRESHOLD, build_image_data_lag_sensor, image_data_lag
from mlassets.sensors.susy_train_rows import trainData_new_rows

SENSORS: list[SensorDefinition] = [image_data_lag, trainData_new_rows]

__all__ = ["DEFAULT_IMAGE_LAG_THRESHOLD", "SENSORS", "build_image_data_lag_sensor", "image_data_lag",
           "trainData_new_rows"]
