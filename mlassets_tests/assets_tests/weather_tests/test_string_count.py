"""The string count: the numpy and Spark key generators agree, and the asset checks the counts key by key."""

import numpy as np
import pytest
from dagster import materialize
from pyspark.sql import functions as F

from mlassets.assets.weather.string_count import (
    KEY_SPACE,
    count_differences,
    key_codes,
    key_names,
    numpy_counts,
    spark_codes,
    spark_counts,
    string_count_benchmark,
    xxhash64_long,
)


def test_numpy_xxhash64_equals_sparks(spark) -> None:
    values = [0, 1, 2, -1, -5, 2**40 + 3, 2**63 - 1, -(2**63), 123_456_789]
    for seed in (0, 7, -3):
        frame = spark.createDataFrame([(v,) for v in values], "id long")
        got = [r["h"] for r in frame.select(F.xxhash64(F.lit(seed).cast("long"), "id").alias("h")).collect()]
        seeded = xxhash64_long(np.array([seed]), 42)
        assert xxhash64_long(np.array(values, dtype=np.int64), seeded).view(np.int64).tolist() == got


def test_spark_and_numpy_generate_and_count_the_same_codes(spark) -> None:
    codes = [r["code"] for r in spark_codes(spark, 2000, 5, 3).collect()]
    assert codes == key_codes(0, 2000, 5).tolist()
    counts = spark_counts(spark, 20_000, 5, 3)
    assert counts.shape == (KEY_SPACE,) and (counts == numpy_counts(20_000, 5, 6_000)).all()


def test_keys_are_the_3_letter_strings() -> None:
    names = key_names()
    assert len(set(names)) == KEY_SPACE and names[0] == "AAA" and names[27] == "ABB" and names[-1] == "ZZZ"


def test_numpy_count_is_seeded_and_chunk_independent() -> None:
    counts = numpy_counts(10_000, 1, 10_000)
    assert counts.sum() == 10_000
    assert (numpy_counts(10_000, 1, 777) == counts).all()
    assert not (numpy_counts(10_000, 2, 10_000) == counts).all()


def test_count_differences_names_every_differing_or_missing_key() -> None:
    assert count_differences({"AAA": 2, "ABC": 1}, {"ABC": 1, "AAA": 2}).empty
    diff = count_differences({"AAA": 2, "ABC": 1}, {"AAA": 3, "ZZZ": 1})
    assert diff.to_dict("records") == [{"key": "AAA", "single_process": 2, "spark": 3},
                                       {"key": "ABC", "single_process": 1, "spark": 0},
                                       {"key": "ZZZ", "single_process": 0, "spark": 1}]


@pytest.mark.parametrize("n_keys", [30_000])
def test_string_count_benchmark_asset(local_resources: dict, n_keys: int) -> None:
    result = materialize([string_count_benchmark], resources={"spark": local_resources["spark"]},
                         run_config={"ops": {"string_count_benchmark": {"config": {"n_keys": n_keys, "seed": 3,
                                                                                   "chunk": 7_000}}}})
    assert result.success
    check = result.get_asset_check_evaluations()[0]
    assert check.check_name == "counts_equal_single_process" and check.passed
    assert check.metadata["keys_differing"].value == 0
    frame = result.output_for_node("string_count_benchmark")
    assert frame["count"].sum() == n_keys and frame["key"].is_unique
    assert frame.set_index("key")["count"].to_dict() == {
        str(k): int(c) for k, c in zip(key_names(), numpy_counts(n_keys, 3, n_keys)) if c}
    metadata = result.asset_materializations_for_node("string_count_benchmark")[0].metadata
    assert metadata["spark_seconds"].value > 0 and metadata["single_process_seconds"].value > 0
