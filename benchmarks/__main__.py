"""Run every benchmark: `python -m benchmarks [--cluster] [name ...]`, one JSON line per result.

With --cluster, the Spark benchmarks (string_count, humidity_forests) run twice, each in a driver process of its own:
on local[*] and on the loopback standalone cluster, and a closing table puts the two figures side by side.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from benchmarks import (cifar_training, fruits_pipeline, humidity_forests, iot_pipeline, kafka_throughput, string_count,
                        susy_throughput)
from benchmarks.common import REPO, bench_cluster, running_bench_stack

BENCHMARKS = {"kafka": kafka_throughput.run, "string_count": string_count.run,
              "humidity_forests": humidity_forests.run, "susy": susy_throughput.run,
              "fruits": fruits_pipeline.run, "iot": iot_pipeline.run,
              "cifar": cifar_training.run}
SPARK_BENCHMARKS = {"string_count": "benchmarks.string_count", "humidity_forests": "benchmarks.humidity_forests"}
LOCAL_MASTER = "local[*]"


def stop_spark() -> None:
    """Stop the Spark context a benchmark left in this process: the next one builds its own session, with its own
    packages and its workers' Python (getOrCreate would hand it the old one's)."""
    if "pyspark" in sys.modules:
        from pyspark import SparkContext

        if SparkContext._active_spark_context is not None:
            SparkContext._active_spark_context.stop()


def spark_lines(module: str, master: str) -> list[dict]:
    """The report lines of one Spark benchmark run in its own driver process against master (echoed as they come)."""
    process = subprocess.run([sys.executable, "-m", module], cwd=REPO, capture_output=True, text=True,
                             env={**os.environ, "BENCH_SPARK_MASTER": master}, check=False)
    lines = [json.loads(line) for line in process.stdout.splitlines() if line.startswith("{")]
    for line in lines:
        print(json.dumps({**line, "target": "cluster" if master != LOCAL_MASTER else "local"}), flush=True)
    if process.returncode != 0:
        raise RuntimeError(f"{module} on {master} exited {process.returncode}: {process.stderr[-2000:]}")
    return lines


def side_by_side(names: list[str], masters: dict[str, str]) -> None:
    """Run each Spark benchmark on every target and print its figures per target in one table."""
    rows = {}
    for name in names:
        for target, master in masters.items():
            for line in spark_lines(SPARK_BENCHMARKS[name], master):
                rows.setdefault(line["benchmark"], {})[target] = line
    print(f"\n{'benchmark':34} {'unit':8} " + " ".join(f"{t + ' figure':>16} {t + ' ratio':>13}" for t in masters))
    for benchmark, by_target in rows.items():
        unit = next(iter(by_target.values()))["unit"]
        cells = [f"{by_target[t]['figure']:>16,.1f} {by_target[t]['ratio']:>13.3f}" if t in by_target
                 else f"{'-':>16} {'-':>13}" for t in masters]
        print(f"{benchmark:34} {unit:8} " + " ".join(cells), flush=True)


def main(args: list[str]) -> int:
    cluster = "--cluster" in args
    names = [a for a in args if a != "--cluster"]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    with running_bench_stack() as stack:
        spark = bench_cluster(stack) if cluster else None
        try:
            if spark is not None:
                spark.up()
            chosen = names or list(BENCHMARKS)
            for name in chosen:
                if spark is None or name not in SPARK_BENCHMARKS:
                    BENCHMARKS[name](stack)
                    stop_spark()
            if spark is not None:
                side_by_side([n for n in chosen if n in SPARK_BENCHMARKS],
                             {"local": LOCAL_MASTER, "cluster": spark.settings.master_url})
        finally:
            if spark is not None:
                spark.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
