"""The mlassets code location, bound to the environment that `environment_name()` chooses."""

from dagster import AssetsDefinition, Definitions, load_assets_from_package_module, map_asset_specs

from mlassets.assets import fruits, iot, susy, weather
from mlassets.checks import MODEL_CHECKS
from mlassets.environment_choice import environment_name
from mlassets.environments import load_environment
from mlassets.jobs import iot_daily_tables_job
from mlassets.sensors import SENSORS

ENVIRONMENT = environment_name()


def iot_assets(environment: str) -> list[AssetsDefinition]:
    """The iot group; in prod its Spark table runs on EMR through Pipes (same key, checks and partitions)."""
    assets = load_assets_from_package_module(iot, group_name="iot")
    if environment != "prod":
        return assets
    from mlassets.pipes.assets import PIPES_ASSETS

    return [map_asset_specs(lambda spec: spec.replace_attributes(group_name="iot"),
                            [PIPES_ASSETS[a.key.to_user_string()]])[0]
            if isinstance(a, AssetsDefinition) and a.key.to_user_string() in PIPES_ASSETS else a
            for a in assets]


defs = Definitions(
    assets=[
        *iot_assets(ENVIRONMENT),
        *load_assets_from_package_module(susy, group_name="susy"),
        *load_assets_from_package_module(fruits, group_name="fruits"),
        *load_assets_from_package_module(weather, group_name="weather"),
    ],
    asset_checks=MODEL_CHECKS,
    jobs=[iot_daily_tables_job],
    sensors=SENSORS,
    resources=load_environment(ENVIRONMENT),
)
