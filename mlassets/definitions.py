"""The mlassets code location; the only module that reads MLASSETS_ENV (default `local`)."""

import os

from dagster import Definitions, load_assets_from_package_module

from mlassets.assets import fruits, iot, susy, weather
from mlassets.environments import load_environment
from mlassets.jobs import iot_daily_tables_job
from mlassets.schedules import SCHEDULES
from mlassets.sensors import SENSORS

ENVIRONMENT = os.environ.get("MLASSETS_ENV", "local")

defs = Definitions(
    assets=[
        *load_assets_from_package_module(iot, group_name="iot"),
        *load_assets_from_package_module(susy, group_name="susy"),
        *load_assets_from_package_module(fruits, group_name="fruits"),
        *load_assets_from_package_module(weather, group_name="weather"),
    ],
    jobs=[iot_daily_tables_job],
    sensors=SENSORS,
    schedules=SCHEDULES,
    resources=load_environment(ENVIRONMENT),
)
