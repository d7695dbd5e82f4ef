"""Pipes twins of in-process assets (same key and checks), computed by the Spark scripts in mlassets/pipes/scripts."""

from collections.abc import Iterator

from dagster import AssetCheckResult, AssetExecutionContext, MaterializeResult, multi_asset

from mlassets.assets.iot.error_tables import DayTablesConfig, producer_error_counts
from mlassets.pipes.emr import EMRPipesResource
from mlassets.resources import LakeResource, MongoResource


@multi_asset(
    name="producer_error_counts",
    specs=list(producer_error_counts.specs),
    check_specs=list(producer_error_counts.check_specs),
    partitions_def=producer_error_counts.partitions_def,
    backfill_policy=producer_error_counts.backfill_policy,
)
def producer_error_counts_pipes(context: AssetExecutionContext, config: DayTablesConfig, emr: EMRPipesResource,
                                lake: LakeResource, mongo: MongoResource
                                ) -> Iterator[MaterializeResult | AssetCheckResult]:
    """producer_error_counts computed by scripts/producer_error_counts.py through Pipes (EMR in prod)."""
    invocation = emr.run(context, "producer_error_counts.py",
                         extras={"database": config.database, "lake_root": lake.root,
                                 "lake_endpoint_url": lake.endpoint_url},
                         env={"MLASSETS_MONGO_URI": mongo.uri})
    yield from invocation.get_results()


# The in-process asset -> the same asset computed through Pipes (what prod swaps in for Spark on EMR).
PIPES_ASSETS = {"producer_error_counts": producer_error_counts_pipes}
