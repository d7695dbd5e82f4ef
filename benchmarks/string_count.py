"""Seeded random 3-letter keys counted on Spark local (DataFrame API) vs a chunked numpy count, same keys, same run:
both sides hash the row numbers to key codes, count the codes and name the 17,576 keys once.

Run alone (no servers needed): `python -m benchmarks.string_count [N]` (default 100 M keys,
or BENCH_STRING_COUNT_N). The original system reported 12.75 s for 10 M keys with an RDD `reduceByKey`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from mlassets.assets.weather.string_count import count_differences, named_counts, numpy_counts, spark_counts
from benchmarks.common import report

N_KEYS = int(os.environ.get("BENCH_STRING_COUNT_N", 100_000_000))
CHUNK = 5_000_000


def _session() -> Any:
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(os.environ.get("BENCH_SPARK_MASTER", "local[*]"))
            .appName("bench-string-count").config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1").config("spark.ui.enabled", "false")
            .config("spark.driver.memory", "2g").config("spark.executor.memory", "768m")
            .config("spark.ui.showConsoleProgress", "false").getOrCreate())


def measure(n_keys: int, partitions: int | None = None) -> dict[str, Any]:
    """Spark and numpy counts of the same n_keys keys: seconds of each, and whether they agree key by key."""
    session = _session()
    partitions = partitions or max(session.sparkContext.defaultParallelism * 4, 8)
    spark_counts(session, 1_000_000, 1, partitions)  # warm the JVM and the code generation
    start = time.perf_counter()
    counted = spark_counts(session, n_keys, 0, partitions)
    spark_seconds = time.perf_counter() - start
    start = time.perf_counter()
    counts = numpy_counts(n_keys, 0, CHUNK)
    numpy_seconds = time.perf_counter() - start
    return {"n_keys": n_keys, "spark_seconds": round(spark_seconds, 3), "numpy_seconds": round(numpy_seconds, 3),
            "keys_differing": len(count_differences(named_counts(counts), named_counts(counted))), "partitions": partitions,
            "spark_master": session.sparkContext.master}


def run(stack: object = None) -> None:
    """Report Spark keys/s against the single-process numpy keys/s (the ceiling) for N_KEYS keys."""
    result = measure(N_KEYS)
    if result["keys_differing"]:
        raise AssertionError(f"Spark and numpy disagree on {result['keys_differing']} keys")
    report("string_count_spark", N_KEYS / result["spark_seconds"], N_KEYS / result["numpy_seconds"], "keys/s",
           **result, original="12.75 s for 10 M keys, RDD reduceByKey, its own machine")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        N_KEYS = int(float(sys.argv[1]))
    run()
