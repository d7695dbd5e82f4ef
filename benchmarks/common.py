"""Helpers shared by the benchmarks: machine facts, one JSON line per result, a benchmark stack."""

from __future__ import annotations

import importlib
import json
import os
import platform
import threading
import time
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
            "python": platform.python_version(), "platform": platform.platform(), **blas()}


def blas() -> dict[str, Any]:
    """numpy's BLAS and the kernel it runs: a machine may pin OpenBLAS to older kernels (OPENBLAS_CORETYPE), which
    every NumPy figure of the run (forward passes, SVDs) then reflects."""
    from threadpoolctl import threadpool_info

    importlib.import_module("numpy")  # loads the BLAS that threadpoolctl reports
    libraries = [i for i in threadpool_info() if i["user_api"] == "blas"]
    first = libraries[0] if libraries else {}
    return {"blas": f"{first.get('internal_api', 'none')} {first.get('architecture') or ''}".strip(),
            "openblas_coretype": os.environ.get("OPENBLAS_CORETYPE")}


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


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (state first); OSError when the process is gone."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def tree_rss(pid: int) -> dict[str, int]:
    """Resident bytes of pid (the driver), its children (the Spark JVM) and their descendants (the Python workers)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = _stat_fields(entry.name)
            children.setdefault(int(fields[1]), []).append(int(entry.name))
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    parts = {"driver": 0, "jvm": 0, "python_workers": 0}
    todo = [(pid, "driver")]
    while todo:
        current, part = todo.pop()
        parts[part] += rss.get(current, 0)
        todo.extend((c, "jvm" if part == "driver" else "python_workers") for c in children.get(current, []))
    return parts


class PeakTreeRss:
    """The peak of tree_rss(pid) summed, sampled every 0.2 s while the block runs, and its split at that moment."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = pid if pid is not None else os.getpid()
        self.peak: dict[str, int] = {"total": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            parts = tree_rss(self.pid)
            if sum(parts.values()) > self.peak["total"]:
                self.peak = {**parts, "total": sum(parts.values())}
            time.sleep(0.2)

    def __enter__(self) -> "PeakTreeRss":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def mib(self) -> dict[str, Any]:
        """{"peak_rss_mib": total, "peak_rss_split_mib": {driver, jvm, python_workers}} in MiB."""
        return {"peak_rss_mib": round(self.peak["total"] / 2**20),
                "peak_rss_split_mib": {k: round(v / 2**20) for k, v in self.peak.items() if k != "total"}}


def cpu_seconds(pid: int | None = None) -> float:
    """User + system CPU seconds of one process, all its threads, so far (0.0 when it is gone)."""
    try:
        fields = _stat_fields(pid or os.getpid())
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
