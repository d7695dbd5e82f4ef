"""Helpers shared by the benchmarks: machine facts, one JSON line per result, a benchmark stack."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlassets.stack import LocalStack, StackSettings
from mlassets.stack.spark_cluster import SparkClusterSettings, SparkStandaloneCluster

REPO = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """The facts that make a figure comparable: CPU count, memory, Python and platform."""
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    cpu = ""
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                   if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpus": os.cpu_count(), "mem_gib": round(mem_kib / 2**20, 1), "cpu": cpu,
            "python": platform.python_version(), "platform": platform.platform()}


def report(name: str, figure: float, ceiling: float, unit: str, **extra: Any) -> dict[str, Any]:
    """Print one JSON line: the figure, the raw ceiling measured in the same run, their ratio and the load average."""
    line = {"benchmark": name, "figure": round(figure, 2), "ceiling": round(ceiling, 2), "unit": unit,
            "ratio": round(figure / ceiling, 4) if ceiling else None,
            "load_average": [round(x, 2) for x in os.getloadavg()], **extra, "machine": machine()}
    print(json.dumps(line), flush=True)
    return line


def bench_stack() -> LocalStack:
    """A stack on its own ports and directory, apart from the developer's and the tests'."""
    return LocalStack(StackSettings.from_env(
        run_dir=REPO / ".mlassets" / "bench-stack", cache_dir=REPO / ".cache",
        kafka_port=29092, kafka_controller_port=29093, mongo_port=47017, s3_port=29000,
    ))


@contextmanager
def running_bench_stack() -> Iterator[LocalStack]:
    """The benchmark stack, started if it was not running and then stopped again."""
    stack = bench_stack()
    started = stack.up()
    try:
        yield stack
    finally:
        if started:
            stack.down()


def bench_cluster(stack: LocalStack) -> SparkStandaloneCluster:
    """The loopback Spark cluster (master + 2 one-core workers) on ports of its own, beside the benchmark stack."""
    return SparkStandaloneCluster(stack.settings, SparkClusterSettings(master_port=27077, ui_port=28080))
