"""The lake IO manager with throwaway assets: exact paths, pandas and Spark inputs, partitions, local and S3."""

from pathlib import Path

import pandas as pd
import pytest
from dagster import AssetIn, DailyPartitionsDefinition, asset, materialize
from pyspark.sql import DataFrame as SparkDF

from mlassets.resources import LakeParquetIOManager, LakeResource
from mlassets.stack import StackSettings


@asset(key_prefix=["demo"])
def numbers() -> pd.DataFrame:
    return pd.DataFrame({"n": range(10), "even": [i % 2 == 0 for i in range(10)]})


@asset(key_prefix=["demo"], ins={"numbers": AssetIn(key=["demo", "numbers"])})
def even_count(numbers: SparkDF) -> SparkDF:
    return numbers.groupBy("even").count()


@asset(key_prefix=["demo"], ins={"even_count": AssetIn(key=["demo", "even_count"])})
def even_table(even_count: pd.DataFrame) -> pd.DataFrame:
    return even_count.sort_values("even").reset_index(drop=True)


days = DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-01-04")


@asset(partitions_def=days)
def daily(context) -> pd.DataFrame:
    return pd.DataFrame({"day": [context.partition_key]})


def _lake(kind: str, tmp_path: Path, stack: StackSettings, unique: str) -> LakeResource:
    if kind == "local":
        return LakeResource(root=str(tmp_path / "lake"))
    lake = LakeResource(root=f"s3://io-{unique}/root", endpoint_url=stack.s3_endpoint,
                        access_key_id="local", secret_access_key="local")
    return lake


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_pandas_spark_pandas_chain(kind: str, tmp_path: Path, stack: StackSettings, spark, local_resources: dict,
                                   unique: str) -> None:
    lake = _lake(kind, tmp_path, stack, unique)
    io_manager = LakeParquetIOManager(lake=lake, spark=local_resources["spark"])
    result = materialize([numbers, even_count, even_table], resources={"io_manager": io_manager})
    assert result.success
    materializations = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    paths = {m.asset_key.to_user_string(): m.metadata["path"].value for m in materializations}
    base = lake.uri()
    assert paths["demo/numbers"] == f"{base}/demo/numbers"
    assert paths["demo/even_count"] == (f"s3a://io-{unique}/root/demo/even_count" if kind == "s3"
                                        else f"{base}/demo/even_count")
    table = lake.read_parquet("demo", "even_table")
    assert table.to_dict("list") == {"even": [False, True], "count": [5, 5]}
    if kind == "local":
        assert (tmp_path / "lake/demo/numbers/part-00000.parquet").is_file()
        assert any(p.suffix == ".parquet" for p in (tmp_path / "lake/demo/even_count").iterdir())


def test_partitions_land_in_their_own_directories(tmp_path: Path, local_resources: dict) -> None:
    lake = LakeResource(root=str(tmp_path / "lake"))
    io_manager = LakeParquetIOManager(lake=lake, spark=local_resources["spark"])
    for day in ("2024-01-01", "2024-01-02"):
        assert materialize([daily], partition_key=day, resources={"io_manager": io_manager}).success
    assert sorted(p.name for p in (tmp_path / "lake/daily").iterdir()) == ["2024-01-01", "2024-01-02"]
    assert lake.read_parquet("daily", "2024-01-02")["day"].tolist() == ["2024-01-02"]


def test_other_objects_are_refused_not_pickled(tmp_path: Path, local_resources: dict) -> None:
    @asset
    def a_dict() -> dict:
        return {"a": 1}

    io_manager = LakeParquetIOManager(lake=LakeResource(root=str(tmp_path)), spark=local_resources["spark"])
    result = materialize([a_dict], resources={"io_manager": io_manager}, raise_on_error=False)
    assert not result.success
    error = result.get_step_failure_events()[0].event_specific_data.error
    assert "not dict (nothing is pickled)" in str(error.cause.message if error.cause else error.message)
    assert not any(tmp_path.rglob("*a_dict*"))
