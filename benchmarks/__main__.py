"""Run every benchmark: `python -m benchmarks [--cluster] [name ...]`, one JSON line per result.

Each benchmark runs in a process of its own on the shared benchmark stack when more than one is chosen; one that
fails is named at the end and the others still run.

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


def run_alone(name: str) -> int:
    """Run one benchmark in a process of its own (output passed through); its exit code.

    A Spark session's packages are fixed when its JVM starts, and a stopped session leaves that JVM behind: run in
    one process, a benchmark after another Spark benchmark would get the first one's jars (the error table then
    finds no Mongo connector).
    """
    return subprocess.run([sys.executable, "-m", "benchmarks", name], cwd=REPO, check=False).returncode


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
            here = [n for n in chosen if spark is None or n not in SPARK_BENCHMARKS]
            failed: list[str] = []
            if len(here) == 1:
                BENCHMARKS[here[0]](stack)
            else:
                failed = [name for name in here if run_alone(name) != 0]
            if spark is not None:
                side_by_side([n for n in chosen if n in SPARK_BENCHMARKS],
                             {"local": LOCAL_MASTER, "cluster": spark.settings.master_url})
        finally:
            if spark is not None:
                spark.down()
    if failed:
        print(f"benchmark(s) that failed: {', '.join(failed)} (their output is above)", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
