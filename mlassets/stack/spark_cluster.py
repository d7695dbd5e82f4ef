"""A Spark standalone cluster on loopback: one master and N workers started with the pip pyspark's spark-class.

The pip pyspark has no sbin/start-master.sh, so each daemon is `$SPARK_HOME/bin/spark-class <main class>`, tracked
like the other local servers (pid file, log file). Optional part of the stack:
    python -m mlassets.stack.spark_cluster up|down|status
Ports: MLASSETS_SPARK_MASTER_PORT (17077) and MLASSETS_SPARK_MASTER_UI_PORT (18080), away from Spark's 7077/8080;
the workers use ephemeral ports. Sized for a small machine: 2 workers x 1 core x 1g. The workers have no Python of
their own: each application's executors unpack the packed environment that SparkResource ships (executor_env.py).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlassets.stack.process import ManagedProcess, StackError, refuse_taken_port, require_tool
from mlassets.stack.settings import StackSettings


def spark_home() -> Path:
    """The pip pyspark's directory, which is a Spark distribution with bin/spark-class."""
    import pyspark

    home = Path(pyspark.__file__).resolve().parent
    if not (home / "bin" / "spark-class").is_file():
        raise StackError(f"{home}/bin/spark-class is missing: reinstall pyspark (`pip install pyspark`)")
    return home


@dataclass(frozen=True)
class SparkClusterSettings:
    """Where the master listens and how big the workers are."""

    host: str = "127.0.0.1"
    master_port: int = 17077
    ui_port: int = 18080
    workers: int = 2
    worker_cores: int = 1
    worker_memory: str = "1g"
    daemon_memory: str = "256m"

    @classmethod
    def from_env(cls) -> "SparkClusterSettings":
        """Defaults, with MLASSETS_SPARK_MASTER_PORT / _UI_PORT / MLASSETS_SPARK_WORKERS overrides."""
        env = os.environ
        return cls(master_port=int(env.get("MLASSETS_SPARK_MASTER_PORT", cls.master_port)),
                   ui_port=int(env.get("MLASSETS_SPARK_MASTER_UI_PORT", cls.ui_port)),
                   workers=int(env.get("MLASSETS_SPARK_WORKERS", cls.workers)))

    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.master_port}"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.ui_port}"


class SparkStandaloneCluster:
    """The master and its workers as background processes under the stack's run directory."""

    def __init__(self, stack: StackSettings | None = None, settings: SparkClusterSettings | None = None) -> None:
        self.stack = stack or StackSettings.from_env()
        self.settings = settings or SparkClusterSettings.from_env()
        self.run_dir = self.stack.run_dir / "spark"
        self.master = ManagedProcess("spark-master", self.run_dir)
        self.workers = [ManagedProcess(f"spark-worker-{i}", self.run_dir) for i in range(self.settings.workers)]

    def _env(self) -> dict[str, str]:
        home = spark_home()
        return {
            "SPARK_HOME": str(home),
            "SPARK_LOCAL_IP": self.settings.host,
            "SPARK_DAEMON_MEMORY": self.settings.daemon_memory,
            # every application unpacks its Python environment per executor (0.3 GB, 1.7 GB with TensorFlow): the
            # workers delete a finished application's directory after 10 minutes
            "SPARK_WORKER_OPTS": "-Dspark.worker.cleanup.enabled=true -Dspark.worker.cleanup.interval=300 "
                                 "-Dspark.worker.cleanup.appDataTtl=600",
            "SPARK_NO_DAEMONIZE": "1",
        }

    def _spark_class(self, *args: str) -> list[str]:
        require_tool("java", "a Java 17 runtime, e.g. `apt-get install openjdk-17-jre-headless`")
        return [str(spark_home() / "bin" / "spark-class"), *args]

    def up(self) -> list[str]:
        """Start the master and the workers that are not running; wait until every worker is registered."""
        s, started = self.settings, []
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.master.pid() is None:
            for port in (s.master_port, s.ui_port):
                refuse_taken_port("spark-master", s.host, port)
            self.master.start(self._spark_class(
                "org.apache.spark.deploy.master.Master", "--host", s.host, "--port", str(s.master_port),
                "--webui-port", str(s.ui_port)), cwd=self.run_dir, env=self._env())
            self.master.wait_ready(lambda: self.state()["status"] == "ALIVE", self.stack.start_timeout_s)
            started.append(self.master.name)
        for worker in self.workers:
            if worker.pid() is not None:
                continue
            work_dir = self.run_dir / f"{worker.name}-work"
            # what an earlier life of this worker left (finished applications' unpacked environments) goes now
            shutil.rmtree(work_dir, ignore_errors=True)
            work_dir.mkdir()
            worker.start(self._spark_class(
                "org.apache.spark.deploy.worker.Worker", "--host", s.host, "--webui-port", "0",
                "--cores", str(s.worker_cores), "--memory", s.worker_memory, "--work-dir", str(work_dir),
                s.master_url), cwd=self.run_dir, env=self._env())
            started.append(worker.name)
        self.master.wait_ready(lambda: self.alive_workers() >= len(self.workers), self.stack.start_timeout_s)
        return started

    def down(self) -> list[str]:
        """Stop the workers, then the master; returns the names stopped."""
        return [p.name for p in [*self.workers, self.master] if p.stop()]

    def state(self) -> dict:
        """The master's JSON status (workers, running and completed applications)."""
        with urllib.request.urlopen(f"{self.settings.ui_url}/json/", timeout=3) as response:
            return json.loads(response.read())

    def alive_workers(self) -> int:
        """How many workers the master sees as ALIVE."""
        return sum(1 for w in self.state().get("workers", []) if w.get("state") == "ALIVE")


def main(argv: list[str] | None = None) -> int:
    """`python -m mlassets.stack.spark_cluster up|down|status`."""
    action = (argv if argv is not None else sys.argv[1:] or ["status"])[0]
    cluster = SparkStandaloneCluster()
    try:
        if action == "up":
            started = cluster.up()
            print(f"started: {', '.join(started)}" if started else "already running")
        elif action == "down":
            stopped = cluster.down()
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        elif action != "status":
            print("usage: python -m mlassets.stack.spark_cluster up|down|status", file=sys.stderr)
            return 2
    except StackError as exc:
        print(f"spark cluster: {exc}", file=sys.stderr)
        return 1
    running = cluster.master.pid() is not None
    workers = cluster.alive_workers() if running else 0
    print(f"spark-master {'running' if running else 'stopped':8} {cluster.settings.master_url:26} "
          f"workers alive: {workers}/{len(cluster.workers)}  ui: {cluster.settings.ui_url}  "
          f"logs: {cluster.run_dir}")
    return 0 if action != "status" or (running and workers == len(cluster.workers)) else 3


if __name__ == "__main__":
    sys.exit(main())
