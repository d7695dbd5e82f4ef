"""Dead letters: the BadMessage a codec raises, and the `<topic>.dlq` records acknowledged before offsets move on.

Dead letters are at-least-once: a letter is sent each time a drain decodes its message in a batch whose offsets were
not yet committed, so a drain that dies between sending and committing sends that batch's letters again on its
rerun. Every letter names its source (topic, partition, offset); a reader deduplicates on that triple.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

from kafka import KafkaProducer
from kafka.producer.future import FutureRecordMetadata

from mlassets.names import dlq_topic

MAX_ERROR_TEXT = 200
LETTER_KEY_BYTES = 256
LETTER_VALUE_BYTES = 4096
Decoder = TypeVar("Decoder", bound=Callable[..., Any])


class BadMessage(ValueError):
    """A message that cannot be used; `reason` (its kind before the first colon) goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DeadLetterError(RuntimeError):
    """A dead letter the broker did not acknowledge: the offsets behind it stay uncommitted."""


def reason_kind(reason: str) -> str:
    """The stable part of a dead-letter reason (before the colon), used for counts."""
    return reason.split(":", 1)[0]


def error_text(exc: BaseException) -> str:
    """The exception's class and a bounded part of its message, for a reason."""
    return f"{type(exc).__name__}: {str(exc)[:MAX_ERROR_TEXT]}"


def rejection(exc: Exception) -> BadMessage:
    """The BadMessage for any exception raised while decoding or validating one message (naming its class)."""
    return exc if isinstance(exc, BadMessage) else BadMessage(f"undecodable message: {error_text(exc)}")


def rejects_any_error(decode: Decoder) -> Decoder:
    """The decoder with every exception it raises turned into a BadMessage."""

    @functools.wraps(decode)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return decode(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - hostile input can make a parser raise anything
            raise rejection(exc) from exc

    return guarded  # type: ignore[return-value]


class DeadLetters:
    """The dead-letter sends of one consumer: sent without waiting, acknowledged before the commit behind them."""

    def __init__(self, producer: KafkaProducer, timeout_s: float | None = None) -> None:
        self.producer = producer
        self.timeout_s = timeout_s  # None: the producer's own delivery timeout bounds the wait

    def send(self, record: Any, reason: str) -> FutureRecordMetadata:
        """Send the letter of one consumed record to `<its topic>.dlq`; the returned future goes to confirm()."""
        letter = {
            "reason": reason, "topic": record.topic, "partition": record.partition, "offset": record.offset,
            "key": (record.key or b"")[:LETTER_KEY_BYTES].decode("utf-8", errors="replace"),
            "value": (record.value or b"")[:LETTER_VALUE_BYTES].decode("utf-8", errors="replace"),
        }
        try:
            return self.producer.send(dlq_topic(record.topic), key=record.key, value=json.dumps(letter).encode())
        except Exception as exc:  # noqa: BLE001 - e.g. no metadata for the dead-letter topic within max_block_ms
            raise DeadLetterError(f"the dead letter of {record.topic}[{record.partition}]@{record.offset} could not "
                                  f"be sent ({error_text(exc)}); its batch stays uncommitted") from exc

    def reject(self, record: Any, exc: Exception, reasons: dict[str, int]) -> FutureRecordMetadata:
        """Send the letter of a record whose decoding raised `exc`, counting it in `reasons` by reason kind."""
        reason = rejection(exc).reason
        sent = self.send(record, reason)
        kind = reason_kind(reason)
        reasons[kind] = reasons.get(kind, 0) + 1
        return sent

    def confirm(self, sent: list[FutureRecordMetadata]) -> None:
        """Wait until the broker acknowledged every letter; DeadLetterError names the first one it refused."""
        for future in sent:
            try:
                future.get(timeout=self.timeout_s)
            except Exception as exc:  # noqa: BLE001 - any failure means the letter is not durable
                failed = sum(1 for f in sent if f.is_done and f.failed())
                raise DeadLetterError(
                    f"a dead letter was not acknowledged ({error_text(exc)}; {failed} of {len(sent)} failed so far): "
                    "the offsets of its batch stay uncommitted, so a rerun sends it again") from exc

    def close(self) -> None:
        """Close the producer (pending letters are flushed first)."""
        self.producer.close()
