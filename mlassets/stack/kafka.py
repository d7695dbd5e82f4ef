"""An Apache Kafka broker in KRaft mode, built from Maven Central jars and run on loopback."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

from mlassets.stack.process import ManagedProcess, port_open, refuse_taken_port, require_tool, run_checked
from mlassets.stack.settings import KAFKA_VERSION, StackSettings

POM = Path(__file__).with_name("kafka-pom.xml")

LOG4J2 = """\
<Configuration status="WARN">
  <Appenders><Console name="out" target="SYSTEM_OUT">
    <PatternLayout pattern="[%d] %p %m (%c)%n"/></Console></Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/><Logger name="org.apache.kafka" level="WARN"/>
    <Root level="WARN"><AppenderRef ref="out"/></Root>
  </Loggers>
</Configuration>
"""


class KafkaServer:
    """One combined broker+controller node; storage formatted once, jars cached in cache_dir."""

    name = "kafka"
    build_label = "jars"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.proc = ManagedProcess(self.name, settings.run_dir)
        self.home = settings.cache_dir / f"kafka-{KAFKA_VERSION}"
        self.data_dir = settings.run_dir / "kafka-data"

    @property
    def classpath(self) -> str:
        return f"{self.home / 'libs'}/*"

    @property
    def built(self) -> bool:
        """Whether the broker jars are in the cache."""
        return (self.home / "libs" / f"kafka_2.13-{KAFKA_VERSION}.jar").exists()

    def build(self) -> None:
        """Copy the broker jars (and kafka-tools) from Maven Central into the cache, once."""
        if self.built:
            return
        require_tool("java", "a Java 17 runtime, e.g. `apt-get install openjdk-17-jre-headless`")
        mvn = require_tool("mvn", "Apache Maven, e.g. `apt-get install maven`")
        run_checked(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
             f"-Dkafka.version={KAFKA_VERSION}", f"-DoutputDirectory={self.home / 'libs'}"],
            what="Downloading the Kafka jars with Maven",
            log_file=self.settings.run_dir / "build.log",
        )

    def _write_config(self) -> Path:
        s = self.settings
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{s.host}:{s.kafka_controller_port}",
            "listeners": f"PLAINTEXT://{s.host}:{s.kafka_port},CONTROLLER://{s.host}:{s.kafka_controller_port}",
            "advertised.listeners": f"PLAINTEXT://{s.host}:{s.kafka_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data_dir / "logs"),
            "num.partitions": str(s.kafka_partitions),
            "auto.create.topics.enable": "true",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "8",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            "log.retention.hours": "168",
        }
        path = self.data_dir / "server.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        (self.data_dir / "log4j2.xml").write_text(LOG4J2)
        return path

    def _java(self, *args: str) -> list[str]:
        java = require_tool("java", "a Java 17 runtime, e.g. `apt-get install openjdk-17-jre-headless`")
        return [java, "-Xms256m", "-Xmx1g", f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.xml'}",
                "-cp", self.classpath, *args]

    def start(self) -> None:
        """Format storage on first use, then start the broker and wait until it serves metadata."""
        if self.proc.pid() is not None:
            return
        refuse_taken_port("kafka", self.settings.host, self.settings.kafka_port)
        config = self._write_config()
        if not (self.data_dir / "logs" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            # `--cluster-id=` form: a random id may start with "-" (1 in 64), which argparse would read as an option
            format_storage = ("kafka.tools.StorageTool", "format", f"--cluster-id={cluster_id}", "-c", str(config))
            run_checked(self._java(*format_storage), what="Formatting the Kafka storage", log_file=self.proc.log_file)
        self.proc.start(self._java("kafka.Kafka", str(config)), cwd=self.data_dir)
        self.proc.wait_ready(self.ready, self.settings.start_timeout_s)

    def ready(self) -> bool:
        """True when the broker answers a metadata request."""
        if not port_open(self.settings.host, self.settings.kafka_port):
            return False
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap, request_timeout_ms=3000)
        try:
            admin.list_topics()
            return True
        finally:
            admin.close()
