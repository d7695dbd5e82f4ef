"""Jobs over the asset graph, and the README's main run: every asset, in runs of one partitions definition."""

import datetime as dt
from dataclasses import dataclass

from dagster import AssetKey, AssetSelection, PartitionsDefinition, TimeWindowPartitionsDefinition, define_asset_job
from dagster._core.definitions.assets.graph.base_asset_graph import BaseAssetGraph



DATASETS_RESOURCE = "datasets"  # the resource key of the dataset files (resources/*.yaml)


@dataclass(frozen=True)
class MainStep:
    """One run of the main run: assets that share a partitions definition, and the partitions it covers."""

    assets: tuple[AssetKey, ...]
    partitions: tuple[str, str] | None = None

    def cli_args(self, module: str = "mlassets.definitions", selection: list[str] | None = None) -> list[str]:
        """The `dagster asset materialize` arguments of this step (the command a user or CI would type)."""
        names = selection or [k.to_user_string() for k in self.assets]
        args = ["asset", "materialize", "--select", ",".join(names), "-m", module]
        if self.partitions is None:
            return args
        first, last = self.partitions
        return args + (["--partition", first] if first == last else ["--partition-range", f"{first}...{last}"])


def main_partitions(partitions_def: PartitionsDefinition | None, now: dt.datetime) -> tuple[str, str] | None:
    """The partitions the main run covers: today's for time windows (the data is made today), else all of them."""
    if partitions_def is None:
        return None
    if isinstance(partitions_def, TimeWindowPartitionsDefinition):
        key = partitions_def.get_partition_key_for_timestamp(now.timestamp())
        if key not in partitions_def.get_partition_keys(current_time=now):
            raise ValueError(f"{partitions_def} has no partition for {now:%Y-%m-%d %H:%M} (set end_offset=1)")
        return key, key
    keys = partitions_def.get_partition_keys(current_time=now)
    if not keys:
        raise ValueError(f"{partitions_def} has no partitions")
    return keys[0], keys[-1]


def main_steps(graph: BaseAssetGraph, now: dt.datetime | None = None) -> list[MainStep]:
    """Every materializable asset in dependency order, one step per (stage, partitions definition).

    An asset joins its parents' stage when it shares their partitions definition (one run can do both),
    and the next stage when it does not, so a run only starts after the runs it reads from. The sources (assets
    with nothing upstream) and the readers of dataset files run in a stage before their children, so that their
    new data versions are recorded before the main run decides which of those children are up to date.
    """
    now = now or dt.datetime.now(dt.timezone.utc)
    stage: dict[AssetKey, int] = {}
    sources: set[AssetKey] = set()
    for key in graph.toposorted_asset_keys:
        node = graph.get(key)
        if not node.is_materializable:
            continue
        parents = [parent for parent in node.parent_keys if parent in stage]
        if not parents or DATASETS_RESOURCE in node.assets_def.required_resource_keys:
            sources.add(key)
        level = 0
        for parent in parents:
            same = graph.get(parent).partitions_def == node.partitions_def and parent not in sources
            level = max(level, stage[parent] + (0 if same else 1))
        stage[key] = level
    steps: list[tuple[int, PartitionsDefinition | None, list[AssetKey]]] = []
    for key, level in sorted(stage.items(), key=lambda item: item[1]):
        pdef = graph.get(key).partitions_def
        for step_level, step_pdef, keys in steps:
            if step_level == level and step_pdef == pdef:
                keys.append(key)
                break
        else:
            steps.append((level, pdef, [key]))
    return [MainStep(tuple(keys), main_partitions(pdef, now)) for _, pdef, keys in steps]


iot_daily_tables_job = define_asset_job(
    "iot_daily_tables_job",
    selection=AssetSelection.assets("producer_error_counts", "class_accuracy"),
    description="The per-day error tables of the inference records (one Spark job per run, any day range).",
)
