"""The real local stack (Kafka, FerretDB, moto S3) on loopback, started and stopped as one."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from mlassets.stack.ferretdb import FerretDBServer
from mlassets.stack.kafka import KafkaServer
from mlassets.stack.process import StackError
from mlassets.stack.s3 import MotoS3Server
from mlassets.stack.settings import StackSettings

__all__ = ["LocalStack", "ServerStatus", "StackError", "StackSettings"]


@dataclass(frozen=True)
class ServerStatus:
    """Whether one server is running, where it listens and where its log is."""

    name: str
    running: bool
    pid: int | None
    address: str
    log_file: str


class LocalStack:
    """All local servers: `up` builds what is missing and starts what is stopped; `down` stops all."""

    def __init__(self, settings: StackSettings | None = None) -> None:
        self.settings = settings or StackSettings.from_env()
        self.kafka = KafkaServer(self.settings)
        self.mongo = FerretDBServer(self.settings)
        self.s3 = MotoS3Server(self.settings)
        self.servers = (self.kafka, self.mongo, self.s3)

    def up(self, report: Callable[[str, float, str], None] | None = None) -> list[str]:
        """Build and start every server that is not running; returns the names started.

        `report(phase, seconds, note)` hears of each build and start as it ends (the main run prints them).
        """
        started = []
        for server in self.servers:
            if server.proc.pid() is not None:
                if report:
                    report(f"{server.name} start", 0.0, "already running")
                continue
            for phase, action, cached in ((server.build_label, server.build, server.built),
                                          ("start", server.start, False)):
                t0 = time.monotonic()
                action()
                if report:
                    report(f"{server.name} {phase}", time.monotonic() - t0, "cached" if cached else "")
            started.append(server.name)
        return started

    def down(self) -> list[str]:
        """Stop every running server; returns the names stopped."""
        return [server.name for server in reversed(self.servers) if server.proc.stop()]

    def status(self) -> list[ServerStatus]:
        """One status line per server."""
        s = self.settings
        addresses = {"kafka": s.kafka_bootstrap, "ferretdb": s.mongo_uri, "s3": s.s3_endpoint}
        return [
            ServerStatus(
                name=server.name,
                running=server.proc.pid() is not None,
                pid=server.proc.pid(),
                address=addresses[server.name],
                log_file=str(server.proc.log_file),
            )
            for server in self.servers
        ]
