"""Freshness of the streaming assets as the UI shows it: the daemon's freshness loop over the code location, then
the state read back through the instance and through the webserver's GraphQL.

A stalled drain is simulated by its last materialisation: reported with a timestamp hours old, as a run that
finished then and was never followed by another would have left it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from dagster import AssetKey, AssetMaterialization, DagsterEvent, DagsterEventType, DagsterInstance, instance_for_test
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.events import StepMaterializationData
from dagster._core.instance.utils import RUNLESS_JOB_NAME, RUNLESS_RUN_ID
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.freshness import FreshnessDaemon
from dagster_graphql.test.utils import execute_dagster_graphql

from mlassets.automation import RECORDS_FRESHNESS
from mlassets.definitions import defs

FRESHNESS_QUERY = """
query Freshness($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) { ... on AssetNode { freshnessStatusInfo { freshnessStatus } } }
}
"""
STREAMING = ("inference_records", "producer_error_counts", "class_accuracy")


@pytest.fixture
def workspace() -> Iterator:
    """A real instance and the code location loaded as the daemon loads it (its own code server)."""
    with instance_for_test() as instance:
        target = ModuleTarget(module_name="mlassets.definitions", attribute="defs", working_directory=None,
                              location_name="mlassets")
        with create_test_daemon_workspace_context(target, instance) as context:
            yield instance, context


def materialized_ago(instance: DagsterInstance, asset: str, age: dt.timedelta, partition: str | None = None) -> None:
    """A materialisation event as a run would have written it `age` ago."""
    when = dt.datetime.now(dt.timezone.utc) - age
    instance.report_dagster_event(
        DagsterEvent(event_type_value=DagsterEventType.ASSET_MATERIALIZATION.value, job_name=RUNLESS_JOB_NAME,
                     event_specific_data=StepMaterializationData(
                         AssetMaterialization(asset_key=asset, partition=partition))),
        run_id=RUNLESS_RUN_ID, timestamp=when.timestamp())


def evaluate(context) -> None:
    """One iteration of the daemon's freshness loop (what `dagster dev` runs every 30 s)."""
    list(FreshnessDaemon(interval_seconds=0).run_iteration(context))


def states(instance: DagsterInstance) -> dict[str, FreshnessState]:
    records = instance.get_freshness_state_records([AssetKey(a) for a in STREAMING])
    return {key.to_user_string(): record.freshness_state for key, record in records.items()}


def ui_status(context, asset: str) -> str:
    result = execute_dagster_graphql(context.create_request_context(), FRESHNESS_QUERY, {"key": {"path": [asset]}})
    assert not result.errors, result.errors
    return result.data["assetNodeOrError"]["freshnessStatusInfo"]["freshnessStatus"]


def test_the_streaming_assets_carry_the_records_freshness_policy():
    graph = defs.resolve_asset_graph()
    with_policy = {key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).freshness_policy}
    assert with_policy == set(STREAMING)
    assert all(graph.get(AssetKey(a)).freshness_policy == RECORDS_FRESHNESS for a in STREAMING)


def test_a_stalled_drain_shows_overdue_then_fresh_again(workspace):
    instance, context = workspace
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    fail, warn = RECORDS_FRESHNESS.fail_window.to_timedelta(), RECORDS_FRESHNESS.warn_window.to_timedelta()
    # The drain ran a few minutes ago and the tables followed: fresh.
    materialized_ago(instance, "inference_records", dt.timedelta(minutes=5))
    for table in STREAMING[1:]:
        materialized_ago(instance, table, dt.timedelta(minutes=4), today)
    evaluate(context)
    assert states(instance) == {asset: FreshnessState.PASS for asset in STREAMING}
    assert ui_status(context, "inference_records") == "HEALTHY"

    # Stalled: the last drain and tables are older than the warning window, then older than the failing one.
    materialized_ago(instance, "inference_records", warn + dt.timedelta(minutes=5))
    evaluate(context)
    assert states(instance)["inference_records"] == FreshnessState.WARN
    assert ui_status(context, "inference_records") == "WARNING"
    materialized_ago(instance, "inference_records", fail + dt.timedelta(minutes=5))
    for table in STREAMING[1:]:
        materialized_ago(instance, table, fail + dt.timedelta(minutes=4), today)
    evaluate(context)
    assert states(instance) == {asset: FreshnessState.FAIL for asset in STREAMING}
    assert {asset: ui_status(context, asset) for asset in STREAMING} == {asset: "DEGRADED" for asset in STREAMING}

    # The drain resumes: fresh again.
    materialized_ago(instance, "inference_records", dt.timedelta(seconds=0))
    evaluate(context)
    assert states(instance)["inference_records"] == FreshnessState.PASS
    assert ui_status(context, "inference_records") == "HEALTHY"
