"""N seeded random 3-letter keys counted per key on Spark (DataFrame API) and checked against a numpy count.

Both sides do the same work: hash each row number to a key code, count the codes, and name the 17,576 keys once.
"""

import string
import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, Config, MetadataValue, Output, asset
from pydantic import Field

from mlassets.automation import SPARK_POOL, TRANSIENT_RETRY
from mlassets.metadata import markdown_table, table_metadata
from mlassets.resources import SparkResource

LETTERS = string.ascii_uppercase
KEY_SPACE = len(LETTERS) ** 3  # 17,576 keys AAA..ZZZ
SPARK_HASH_SEED = 42  # the seed of Spark's xxhash64 expression
_P1, _P2, _P3, _P4, _P5 = (np.uint64(v) for v in (
    0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9, 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5))


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def xxhash64_long(values: np.ndarray, seed: np.ndarray | int) -> np.ndarray:
    """XXH64 of 64-bit integers as Spark's `xxhash64` computes it for a LongType column (uint64 results)."""
    with np.errstate(over="ignore"):
        x = np.asarray(values).astype(np.int64).view(np.uint64)
        h = np.asarray(seed).astype(np.int64).view(np.uint64) + _P5 + np.uint64(8)
        h = h ^ (_rotl(x * _P2, 31) * _P1)
        h = _rotl(h, 27) * _P1 + _P4
        h = (h ^ (h >> np.uint64(33))) * _P2
        h = (h ^ (h >> np.uint64(29))) * _P3
        return h ^ (h >> np.uint64(32))


def key_codes(start: int, stop: int, seed: int) -> np.ndarray:
    """Key codes 0..17575 of rows start..stop-1: pmod(xxhash64(seed, row), 17576), exactly as the Spark side."""
    seeded = xxhash64_long(np.array([seed], dtype=np.int64), SPARK_HASH_SEED)
    hashed = xxhash64_long(np.arange(start, stop, dtype=np.int64), seeded).view(np.int64)
    return np.mod(hashed, KEY_SPACE)


def key_names() -> np.ndarray:
    """The 3-letter key of every code: code = 676 * first + 26 * second + third (A = 0)."""
    codes = np.arange(KEY_SPACE)
    letters = np.array(list(LETTERS))
    return np.char.add(np.char.add(letters[codes // 676], letters[codes // 26 % 26]), letters[codes % 26])


def numpy_counts(n_keys: int, seed: int, chunk: int) -> np.ndarray:
    """Occurrences of each key code among the n_keys seeded keys, generated chunk by chunk in one process."""
    counts = np.zeros(KEY_SPACE, dtype=np.int64)
    for start in range(0, n_keys, chunk):
        counts += np.bincount(key_codes(start, min(start + chunk, n_keys), seed), minlength=KEY_SPACE)
    return counts


def spark_codes(session, n_keys: int, seed: int, partitions: int):  # noqa: ANN001, ANN201 (pyspark types)
    """The same n_keys keys' codes as a Spark DataFrame with one long column `code`, generated on the executors."""
    from pyspark.sql import functions as F

    code = F.pmod(F.xxhash64(F.lit(seed).cast("long"), F.col("id")), F.lit(KEY_SPACE))
    return session.range(0, n_keys, 1, partitions).select(code.alias("code"))


def spark_counts(session, n_keys: int, seed: int, partitions: int) -> np.ndarray:  # noqa: ANN001
    """Occurrences of each key code counted by Spark (groupBy(code).count(), the counterpart of numpy's bincount);
    at most 17,576 rows reach the driver."""
    counts = np.zeros(KEY_SPACE, dtype=np.int64)
    for row in spark_codes(session, n_keys, seed, partitions).groupBy("code").count().collect():
        counts[row["code"]] = row["count"]
    return counts


def named_counts(counts: np.ndarray) -> dict[str, int]:
    """The non-zero counts of an array indexed by key code, by 3-letter key (the keys are named once, here)."""
    return {str(k): int(c) for k, c in zip(key_names(), counts) if c}


def count_differences(single: dict[str, int], spark: dict[str, int]) -> pd.DataFrame:
    """Keys whose counts differ (a key missing on one side counts 0 there)."""
    keys = sorted(set(single) | set(spark))
    frame = pd.DataFrame({"key": keys, "single_process": [single.get(k, 0) for k in keys],
                          "spark": [spark.get(k, 0) for k in keys]})
    return frame[frame["single_process"] != frame["spark"]].reset_index(drop=True)


class StringCountConfig(Config):
    """How many keys to count, and how they are generated."""

    n_keys: int = Field(default=10_000_000, ge=1, le=2_000_000_000,
                        description="Random 3-letter keys to count (10 M by default; 100 M is supported).")
    seed: int = Field(default=0, description="Seed of the key generator (the same keys on both sides).")
    partitions: int = Field(default=0, ge=0, description="Spark partitions of the key range; 0 = the default "
                                                         "parallelism of the session.")
    chunk: int = Field(default=5_000_000, ge=1, description="Keys generated at once by the single-process count.")


@asset(
    code_version="1",
    pool=SPARK_POOL,
    retry_policy=TRANSIENT_RETRY,
    check_specs=[AssetCheckSpec("counts_equal_single_process", asset="string_count_benchmark",
                                description="Spark's count equals the numpy count exactly, key by key")],
)
def string_count_benchmark(config: StringCountConfig,
                           spark: SparkResource) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
    """Occurrences of each 3-letter key among N seeded random keys as counted by Spark, with both count timings."""
    session = spark.spark_session
    partitions = config.partitions or session.sparkContext.defaultParallelism
    start = time.perf_counter()
    counted = spark_counts(session, config.n_keys, config.seed, partitions)
    spark_seconds = time.perf_counter() - start
    start = time.perf_counter()
    counts = numpy_counts(config.n_keys, config.seed, config.chunk)
    numpy_seconds = time.perf_counter() - start

    differences = count_differences(named_counts(counts), named_counts(counted))
    frame = pd.DataFrame({"key": key_names(), "count": counted})
    frame = frame[frame["count"] > 0].reset_index(drop=True)
    yield Output(frame, metadata={
        **table_metadata(frame, preview_rows=5),
        "n_keys": config.n_keys, "distinct_keys": len(frame), "spark_partitions": partitions,
        "spark_master": session.sparkContext.master,
        "spark_seconds": spark_seconds, "single_process_seconds": numpy_seconds,
        "spark_keys_per_second": config.n_keys / spark_seconds,
        "single_process_keys_per_second": config.n_keys / numpy_seconds,
        "min_count": int(frame["count"].min()), "max_count": int(frame["count"].max()),
        "method": MetadataValue.md(
            "Key i = letters of pmod(xxhash64(seed, i), 17576). Spark: `range` -> `xxhash64` -> code -> "
            "`groupBy(code).count()`; single process: the same hash in numpy, chunked, `bincount` of the codes; "
            "both name the 17,576 keys once at the end."),
    })
    yield AssetCheckResult(check_name="counts_equal_single_process", passed=differences.empty, metadata={
        "keys_differing": len(differences), "spark_total": int(counted.sum()), "single_process_total": int(counts.sum()),
        "first_differences": MetadataValue.md(markdown_table(differences, max_rows=10) if len(differences) else "none"),
    })
