"""Consumer-group lag of a topic from committed and end offsets, read with the admin client only."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from kafka import TopicPartition
from kafka.admin import OffsetSpec

from mlassets.resources.kafka import KafkaResource


@dataclass(frozen=True)
class GroupLag:
    """Per partition of a topic: the log start, the end and the group's committed offset (None: nothing yet)."""

    topic: str
    group: str
    start: dict[int, int]
    end: dict[int, int]
    committed: dict[int, int | None]

    @property
    def lag(self) -> dict[int, int]:
        """Messages the group has yet to read per partition (from the log start where nothing is committed)."""
        return {p: self.end[p] - max(self.committed.get(p) or 0, self.start.get(p, 0)) for p in sorted(self.end)}

    @property
    def total(self) -> int:
        return sum(self.lag.values())

    def end_key(self) -> str:
        """A short, stable key of the end offsets: equal end offsets give the same key."""
        text = ",".join(f"{p}:{self.end[p]}" for p in sorted(self.end))
        return f"{self.topic}@{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def group_lag(kafka: KafkaResource, topic: str, group: str, timeout_ms: int = 10_000) -> GroupLag:
    """Read the group's lag on topic without consuming; every request is bounded by timeout_ms."""
    admin = kafka.admin(request_timeout_ms=timeout_ms)
    try:
        described = admin.describe_topics([topic])
        if not described or described[0].get("error_code", 0) != 0:
            return GroupLag(topic, group, {}, {}, {})
        partitions = [TopicPartition(topic, p["partition_index"]) for p in described[0]["partitions"]]
        end = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions}, timeout_ms=timeout_ms)
        start = admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in partitions}, timeout_ms=timeout_ms)
        committed = admin.list_group_offsets({group: partitions}).get(group, {})
    finally:
        admin.close()
    return GroupLag(
        topic, group,
        start={tp.partition: start[tp].offset for tp in partitions},
        end={tp.partition: end[tp].offset for tp in partitions},
        committed={tp.partition: (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else None)
                   for tp in partitions},
    )
