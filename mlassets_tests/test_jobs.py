"""The main run's plan: dependency order, one run per partitions definition, the partitions each run covers."""

import datetime as dt

import pytest
from dagster import AssetKey, AssetSpec, DailyPartitionsDefinition, Definitions, StaticPartitionsDefinition, asset

from mlassets.jobs import MainStep, main_partitions, main_steps

DAILY = DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1)
CHUNKS = StaticPartitionsDefinition(["chunk-00", "chunk-01", "chunk-02"])
NOW = dt.datetime(2026, 11, 21, 15, 30, tzinfo=dt.timezone.utc)


@asset(deps=[AssetSpec("topic")])
def source() -> int:
    return 1


@asset(partitions_def=DAILY)
def daily_table(source: int) -> int:
    return source


@asset(partitions_def=DAILY)
def daily_other(daily_table: int) -> int:
    return daily_table


@asset(partitions_def=CHUNKS)
def chunks(source: int) -> int:
    return source


@asset
def summary(chunks: dict) -> int:
    return len(chunks)


def test_steps_follow_dependencies_and_partitions() -> None:
    graph = Definitions(assets=[AssetSpec("topic"), source, daily_table, daily_other, chunks, summary]
                        ).resolve_asset_graph()
    steps = main_steps(graph, NOW)
    assert steps[0] == MainStep((AssetKey("source"),))
    # the two partitioned runs only need `source`; their order between themselves is free
    daily, chunked = sorted(steps[1:3], key=lambda step: step.partitions[0])
    assert daily == MainStep((AssetKey("daily_table"), AssetKey("daily_other")), ("2026-11-21", "2026-11-21"))
    assert chunked == MainStep((AssetKey("chunks"),), ("chunk-00", "chunk-02"))
    assert steps[3] == MainStep((AssetKey("summary"),))
    assert daily.cli_args()[-2:] == ["--partition", "2026-11-21"]
    assert chunked.cli_args()[2:4] == ["--select", "chunks"]
    assert chunked.cli_args()[-2:] == ["--partition-range", "chunk-00...chunk-02"]


def test_a_time_window_without_todays_partition_is_refused() -> None:
    with pytest.raises(ValueError, match="end_offset=1"):
        main_partitions(DailyPartitionsDefinition(start_date="2026-01-01"), NOW)
    assert main_partitions(None, NOW) is None


@asset
def trained(source: int) -> int:
    return source


def test_sources_run_before_their_unpartitioned_children() -> None:
    steps = main_steps(Definitions(assets=[AssetSpec("topic"), source, trained]).resolve_asset_graph(), NOW)
    assert steps == [MainStep((AssetKey("source"),)), MainStep((AssetKey("trained"),))]
