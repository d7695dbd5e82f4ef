"""Parquet in the lake for every asset: pandas or Spark picked from the type annotation, never pickled."""

from typing import Any

import pandas as pd
from dagster import ConfigurableIOManager, InputContext, OutputContext, ResourceDependency
from dagster_pyspark import LazyPySparkResource

from mlassets.resources.lake import LakeResource


def _is_spark_type(typ: Any) -> bool:
    module = getattr(typ, "__module__", "") or ""
    return module.startswith("pyspark.sql") and getattr(typ, "__name__", "") == "DataFrame"


class LakeParquetIOManager(ConfigurableIOManager):
    """Stores asset outputs at `<lake root>/<asset key>/[<partition>/]` as a parquet directory."""

    lake: ResourceDependency[LakeResource]
    spark: ResourceDependency[LazyPySparkResource]

    def _parts(self, context: InputContext | OutputContext, partition_key: str | None) -> list[str]:
        parts = list(context.asset_key.path)
        if partition_key is not None:
            parts.append(partition_key)
        return parts

    def _partition_keys(self, context: InputContext | OutputContext) -> list[str | None]:
        if not context.has_asset_partitions:
            return [None]
        return list(context.asset_partition_keys)

    def handle_output(self, context: OutputContext, obj: Any) -> None:
        if obj is None:
            return
        keys = self._partition_keys(context)
        if len(keys) != 1:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: a single-run backfill over {len(keys)} partitions "
                "must write its partitions itself and return None"
            )
        parts = self._parts(context, keys[0])
        if isinstance(obj, pd.DataFrame):
            uri = self.lake.write_parquet(obj, *parts)
        elif _is_spark_type(type(obj)):
            self.lake.ensure_bucket()
            uri = self.lake.spark_uri(*parts)
            obj.write.mode("overwrite").parquet(uri)
        else:
            raise TypeError(
                f"{context.asset_key.to_user_string()}: the lake IO manager stores pandas or Spark "
                f"DataFrames, not {type(obj).__name__} (nothing is pickled)"
            )
        context.add_output_metadata({"path": uri})

    def load_input(self, context: InputContext) -> Any:
        keys = self._partition_keys(context)
        wanted = context.dagster_type.typing_type
        if _is_spark_type(wanted):
            session = self.spark.spark_session
            return session.read.parquet(*[self.lake.spark_uri(*self._parts(context, k)) for k in keys])
        frames = [self.lake.read_parquet(*self._parts(context, k)) for k in keys]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
