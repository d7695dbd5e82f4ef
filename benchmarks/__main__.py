"""Run every benchmark: `python -m benchmarks [name ...]`, one JSON line per result."""

from __future__ import annotations

import sys

from benchmarks import fruits_pipeline, humidity_forests, iot_pipeline, kafka_throughput, string_count, susy_throughput
from benchmarks.common import bench_stack

BENCHMARKS = {"kafka": kafka_throughput.run, "string_count": string_count.run,
              "humidity_forests": humidity_forests.run, "susy": susy_throughput.run,
              "fruits": fruits_pipeline.run, "iot": iot_pipeline.run}


def main(names: list[str]) -> int:
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        print(f"unknown benchmark(s) {unknown}; choose from {sorted(BENCHMARKS)}", file=sys.stderr)
        return 2
    stack = bench_stack()
    started = stack.up()
    try:
        for name in names or list(BENCHMARKS):
            BENCHMARKS[name](stack)
    finally:
        if started:
            stack.down()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
