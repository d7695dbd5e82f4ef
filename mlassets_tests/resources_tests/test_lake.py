"""The lake on a local directory and on the real moto S3 server: boto3, pyarrow and Spark s3a."""

import pandas as pd
import pytest
from dagster import DagsterResourceFunctionError, EnvVar, asset, instance_for_test, materialize
from pydantic import ValidationError

from mlassets.resources import LakeResource
from mlassets.stack import StackSettings


@pytest.fixture
def s3_lake(stack: StackSettings, unique: str) -> LakeResource:
    lake = LakeResource(root=f"s3://lake-{unique}/prefix", endpoint_url=stack.s3_endpoint,
                        access_key_id="local", secret_access_key="local")
    lake.ensure_bucket()
    return lake


def test_boto3_put_get(s3_lake: LakeResource, unique: str) -> None:
    client = s3_lake.s3_client()
    client.put_object(Bucket=f"lake-{unique}", Key="a/b.txt", Body=b"hello")
    assert client.get_object(Bucket=f"lake-{unique}", Key="a/b.txt")["Body"].read() == b"hello"


def test_bytes_and_parquet_round_trip_on_s3(s3_lake: LakeResource) -> None:
    assert s3_lake.write_bytes(b"\x00\x01", "blobs", "x.bin").endswith("/prefix/blobs/x.bin")
    assert s3_lake.read_bytes("blobs", "x.bin") == b"\x00\x01"
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    uri = s3_lake.write_parquet(frame, "tables", "t")
    assert uri == s3_lake.root + "/tables/t"
    pd.testing.assert_frame_equal(s3_lake.read_parquet("tables", "t"), frame)
    s3_lake.write_parquet(frame.head(1), "tables", "t")  # a rewrite replaces, never appends
    assert len(s3_lake.read_parquet("tables", "t")) == 1
    assert s3_lake.spark_uri("tables", "t").startswith("s3a://")


def test_local_lake_paths(tmp_path) -> None:
    lake = LakeResource(root=str(tmp_path / "lake"))
    uri = lake.write_parquet(pd.DataFrame({"a": [1]}), "x", "2024-01-01")
    assert uri == str(tmp_path / "lake" / "x" / "2024-01-01")
    assert (tmp_path / "lake/x/2024-01-01/part-00000.parquet").is_file()
    lake.delete("x")
    assert not lake.exists("x")


@pytest.mark.parametrize(("root", "kept"), [
    ("s3://bucket/prefix", "s3://bucket/prefix"),
    ("S3://bucket/prefix", "s3://bucket/prefix"),
    ("s3a://bucket", "s3://bucket"),
    ("S3A://bucket/a/b", "s3://bucket/a/b"),
    ("relative/dir", "relative/dir"),
    ("/abs/dir", "/abs/dir"),
    ("./name:with-colon", "./name:with-colon"),
])
def test_s3_roots_in_any_case_and_local_paths_are_accepted(root: str, kept: str) -> None:
    lake = LakeResource(root=root)
    assert lake.root == kept and lake.is_s3 == kept.startswith("s3://")
    if lake.is_s3:
        assert lake.spark_uri("t") == "s3a://" + kept[len("s3://"):] + "/t"


@pytest.mark.parametrize(("root", "message"), [
    ("gs://bucket/prefix", "unsupported scheme gs:"),
    ("http://127.0.0.1:9000/bucket", "unsupported scheme http:"),
    ("S3:/bucket", "expected s3://bucket"),
    ("s3://", "expected s3://bucket"),
    ("s3a:///prefix", "expected s3a://bucket"),
    ("file:///tmp/lake", "unsupported scheme file:"),
    ("", "empty"),
])
def test_other_roots_are_refused_at_construction(root: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        LakeResource(root=root)


def test_a_root_from_an_env_var_is_checked_when_the_run_resolves_it(monkeypatch, tmp_path) -> None:
    @asset
    def lake_root_seen(lake: LakeResource) -> str:
        return lake.root

    lake = LakeResource(root=EnvVar("MLASSETS_TEST_LAKE_ROOT"))
    monkeypatch.setenv("MLASSETS_TEST_LAKE_ROOT", "S3A://bucket/prefix")
    with instance_for_test() as instance:
        ok = materialize([lake_root_seen], resources={"lake": lake}, instance=instance)
        assert ok.output_for_node("lake_root_seen") == "s3://bucket/prefix"
        monkeypatch.setenv("MLASSETS_TEST_LAKE_ROOT", "gs://bucket")
        with pytest.raises(DagsterResourceFunctionError) as err:
            materialize([lake_root_seen], resources={"lake": lake}, instance=instance)
        assert "unsupported scheme gs:" in str(err.value.__cause__)


def test_spark_s3a_reads_what_pyarrow_wrote_and_writes_back(spark, local_resources: dict, stack: StackSettings,
                                                             unique: str) -> None:
    lake = LakeResource(root=f"s3://spark-{unique}", endpoint_url=stack.s3_endpoint,
                        access_key_id="local", secret_access_key="local")
    lake.write_parquet(pd.DataFrame({"k": ["a", "b", "a"], "v": [1, 2, 3]}), "in")
    frame = spark.read.parquet(lake.spark_uri("in"))
    sums = frame.groupBy("k").sum("v")
    sums.write.mode("overwrite").parquet(lake.spark_uri("out"))
    result = lake.read_parquet("out").sort_values("k").reset_index(drop=True)
    assert result.to_dict("list") == {"k": ["a", "b"], "sum(v)": [4, 2]}
