"""Declarative automation of the asset graph, evaluated by Dagster's own evaluator against a real instance.

Each test reports materializations into `instance_for_test()` the way finished runs would, then calls
`dagster.evaluate_automation_conditions` (the evaluator of `default_automation_condition_sensor`) tick by tick,
passing the cursor on, and asserts what each tick requests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from dagster import (AssetCheckEvaluation, AssetKey, AssetMaterialization, DagsterInstance, DefaultSensorStatus,
                     evaluate_automation_conditions, instance_for_test)

from mlassets.automation import DAY_CLOSE_CRON
from mlassets.definitions import defs
from mlassets.partitions import INFERENCE_DAYS, SUSY_CHUNKS

GRAPH = defs.resolve_asset_graph()
DAY_TABLES = ("producer_error_counts", "class_accuracy")
FRUITS_BELOW_IMAGES = {"fruit_features", "fruit_pca", "fruit_embedding_plot"}
WEATHER_BELOW_OBSERVATIONS = {
    "weather_features", "humidity_model_standalone", "humidity_model_spark", "humidity_xgboost_search",
    "humidity_model_xgboost", "humidity_model_xgboost_spark", "humidity_predictions", "humidity_model_selection",
    "humidity_2020q4_metrics", "humidity_forecast_2021",
}
SENSOR_DRIVEN_OR_SOURCES = {"inference_records", "susy_model", "cifar_classifier", "sample_image_messages",
                            "susy_train_topic", "cifar10_images", "susy_dataset", "fruit_images",
                            "weather_observations", "string_count_benchmark"}


def day(when: dt.datetime) -> str:
    return INFERENCE_DAYS.get_partition_key_for_timestamp(when.timestamp())


class Ticks:
    """The automation sensor's ticks: each evaluation continues from the previous one's cursor."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.instance, self.cursor = instance, None

    def __call__(self, when: dt.datetime) -> dict[str, set[str | None]]:
        result = evaluate_automation_conditions(defs=defs, instance=self.instance, evaluation_time=when,
                                                cursor=self.cursor)
        self.cursor = result.cursor
        requested = {key.to_user_string(): set(result.get_requested_partitions(key))
                     for key in GRAPH.get_all_asset_keys() if result.get_num_requested(key)}
        assert sum(len(p) for p in requested.values()) == result.total_requested
        return requested


def materialize(instance: DagsterInstance, asset: str, partitions: list[str] | None = None,
                checks: dict[str, bool] | None = None) -> None:
    """What a finished run leaves in the event log: the materializations and the checks evaluated with them."""
    for partition in partitions or [None]:
        instance.report_runless_asset_event(AssetMaterialization(asset_key=asset, partition=partition))
    for name, passed in (checks or {}).items():
        instance.report_runless_asset_event(AssetCheckEvaluation(asset_key=AssetKey(asset), check_name=name,
                                                                 passed=passed))


def materialize_all(instance: DagsterInstance, now: dt.datetime) -> None:
    """Every materializable asset once (today's and yesterday's days, every chunk), every check passed."""
    days = [day(now - dt.timedelta(days=1)), day(now)]
    for key in GRAPH.materializable_asset_keys:
        node = GRAPH.get(key)
        partitions = (days if node.partitions_def == INFERENCE_DAYS
                      else SUSY_CHUNKS.get_partition_keys() if node.partitions_def == SUSY_CHUNKS else None)
        checks = {check.name: True for check in GRAPH.get_check_keys_for_assets({key})}
        materialize(instance, key.to_user_string(), partitions, checks)


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as instance:
        yield instance


@pytest.fixture
def now() -> dt.datetime:
    """Midday today (UTC), so that the next 00:15 tick is the next day's."""
    return dt.datetime.now(dt.timezone.utc).replace(hour=12, minute=0, second=0, microsecond=0)


@pytest.fixture
def ticks(instance: DagsterInstance, now: dt.datetime) -> Ticks:
    """A materialised graph and the sensor's first tick, which requests nothing (nothing changed since)."""
    materialize_all(instance, now)
    tick = Ticks(instance)
    assert tick(now) == {}
    return tick


def test_only_assets_below_the_sensors_and_the_dataset_readers_carry_a_condition():
    automated = {key.to_user_string() for key in GRAPH.get_all_asset_keys() if GRAPH.get(key).automation_condition}
    assert automated == {*DAY_TABLES, "susy_test_scaled", "susy_evaluation", "susy_evaluation_summary",
                         *FRUITS_BELOW_IMAGES, *WEATHER_BELOW_OBSERVATIONS}
    assert not automated & SENSOR_DRIVEN_OR_SOURCES
    sensors = {sensor.name: sensor for sensor in defs.get_repository_def().sensor_defs}
    # The two Kafka sensors stay; Dagster adds the automation sensor that evaluates the conditions. Like the
    # Kafka sensors it starts stopped (README, "Automation"): turned on in the UI or with `dagster sensor start`.
    assert {"image_data_lag", "trainData_new_rows", "default_automation_condition_sensor"} <= set(sensors)
    assert sensors["default_automation_condition_sensor"].default_status == DefaultSensorStatus.STOPPED


def test_new_inference_records_refresh_only_todays_error_tables_once(instance, now, ticks):
    materialize(instance, "inference_records", checks={"no_dead_letters": True})
    later = now + dt.timedelta(minutes=1)
    assert ticks(later) == {table: {day(now)} for table in DAY_TABLES}
    # Requested once: the next ticks, with nothing new, request nothing (also after the tables ran).
    assert ticks(later + dt.timedelta(minutes=1)) == {}
    for table in DAY_TABLES:
        materialize(instance, table, [day(now)])
    assert ticks(later + dt.timedelta(minutes=2)) == {}
    # Each further drain refreshes today's partitions again.
    materialize(instance, "inference_records")
    assert ticks(later + dt.timedelta(minutes=3)) == {table: {day(now)} for table in DAY_TABLES}


def test_the_previous_day_is_closed_once_after_the_cron_tick(instance, now, ticks):
    next_day = now.date() + dt.timedelta(days=1)
    hour, minute = int(DAY_CLOSE_CRON.split()[1]), int(DAY_CLOSE_CRON.split()[0])
    tick_time = dt.datetime.combine(next_day, dt.time(hour, minute), dt.timezone.utc)
    # After midnight but before the cron tick: the day that just ended is not closed yet, nothing is requested.
    assert ticks(tick_time - dt.timedelta(minutes=10)) == {}
    # The first tick after 00:15 requests the day that ended (not the new day: no records for it yet).
    assert ticks(tick_time + dt.timedelta(minutes=1)) == {table: {day(now)} for table in DAY_TABLES}
    assert ticks(tick_time + dt.timedelta(minutes=2)) == {}
    assert ticks(tick_time + dt.timedelta(hours=3)) == {}


def test_a_new_susy_model_version_rescores_every_chunk_once(instance, now, ticks):
    materialize(instance, "susy_model", checks={"held_out_accuracy": True, "stored_model_intact": True})
    later = now + dt.timedelta(minutes=1)
    assert ticks(later) == {"susy_evaluation": set(SUSY_CHUNKS.get_partition_keys())}
    assert ticks(later + dt.timedelta(minutes=1)) == {}
    # The summary (unpartitioned, so never in the chunks' run) follows once the rescoring is materialised.
    materialize(instance, "susy_evaluation", SUSY_CHUNKS.get_partition_keys(), checks={"all_rows_scored": True})
    assert ticks(later + dt.timedelta(minutes=2)) == {"susy_evaluation_summary": {None}}
    assert ticks(later + dt.timedelta(minutes=3)) == {}


def test_a_susy_model_failing_a_blocking_check_is_not_scored_until_a_version_passes(instance, now, ticks):
    later = now + dt.timedelta(minutes=1)
    materialize(instance, "susy_model", checks={"held_out_accuracy": False, "stored_model_intact": True})
    assert ticks(later) == {}
    assert ticks(later + dt.timedelta(minutes=1)) == {}
    materialize(instance, "susy_model", checks={"held_out_accuracy": True, "stored_model_intact": True})
    assert ticks(later + dt.timedelta(minutes=2)) == {"susy_evaluation": set(SUSY_CHUNKS.get_partition_keys())}


def test_fruits_and_weather_follow_their_inputs(instance, now, ticks):
    materialize(instance, "fruit_images", checks={"no_quarantined_files": True})
    later = now + dt.timedelta(minutes=1)
    assert ticks(later) == {asset: {None} for asset in FRUITS_BELOW_IMAGES}
    assert ticks(later + dt.timedelta(minutes=1)) == {}
    materialize(instance, "weather_observations")
    assert ticks(later + dt.timedelta(minutes=2)) == {asset: {None} for asset in WEATHER_BELOW_OBSERVATIONS}
    assert ticks(later + dt.timedelta(minutes=3)) == {}
    # A model in the middle of the chain: only what reads it follows.
    materialize(instance, "humidity_model_spark")
    assert ticks(later + dt.timedelta(minutes=4)) == {
        asset: {None} for asset in ("humidity_predictions", "humidity_model_selection", "humidity_2020q4_metrics",
                                    "humidity_forecast_2021")}
