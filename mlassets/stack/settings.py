"""Ports, directories and versions of the local stack, overridable by MLASSETS_STACK_* variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from mlassets.paths import CACHE_DIR, RUN_DIR

KAFKA_VERSION = "4.1.2"
FERRETDB_VERSION = "v1.24.2"


@dataclass(frozen=True)
class StackSettings:
    """Where the local servers keep builds, data and logs, and which loopback ports they use."""

    cache_dir: Path = CACHE_DIR
    run_dir: Path = RUN_DIR / "stack"
    host: str = "127.0.0.1"
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    mongo_port: int = 27017
    s3_port: int = 9000
    kafka_partitions: int = 4
    start_timeout_s: float = 90.0

    @classmethod
    def from_env(cls, **overrides: object) -> "StackSettings":
        """Defaults, then MLASSETS_STACK_<FIELD> environment variables, then explicit overrides."""
        values: dict[str, object] = {}
        for name, default in cls().__dict__.items():
            raw = os.environ.get(f"MLASSETS_STACK_{name.upper()}")
            if raw is None:
                continue
            if isinstance(default, Path):
                values[name] = Path(raw).resolve()
            elif isinstance(default, bool):
                values[name] = raw.lower() in ("1", "true", "yes")
            else:
                try:
                    values[name] = type(default)(raw)
                except ValueError as exc:
                    raise ValueError(f"MLASSETS_STACK_{name.upper()}={raw!r}: {exc}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        return replace(cls(), **values)

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"

    @property
    def mongo_uri(self) -> str:
        return f"mongodb://{self.host}:{self.mongo_port}/"

    @property
    def s3_endpoint(self) -> str:
        return f"http://{self.host}:{self.s3_port}"
