"""The batched inference loop: drain `image_data` as a consumer group, classify, upsert, then commit."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from kafka import TopicPartition
from kafka.structs import OffsetAndMetadata
from pymongo import UpdateOne
from pymongo.errors import BulkWriteError
from pymongo.collection import Collection

from mlassets.datasets.cifar10 import LABELS
from mlassets.resources.kafka import KafkaResource
from mlassets.streaming.image_messages import BadMessage, ImageMessage, decode_image_message

if TYPE_CHECKING:
    import keras

INFERENCE_GROUP = "mlassets-inference"
Classifier = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass
class DrainSummary:
    """Counts of one drain: stored documents, dead letters by reason, batches and seconds."""

    stored: int = 0
    dead_letters: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0


class DrainStalled(RuntimeError):
    """A drain that stopped making progress before the end offsets it set out to reach."""


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0]


def drain_inference(kafka: KafkaResource, collection: Collection, classify: Classifier, model_version: str,
                    topic: str = "image_data", group: str = INFERENCE_GROUP, batch_size: int = 256,
                    stop_at_end: bool = True, stall_timeout_s: float = 90.0,
                    should_stop: Callable[[], bool] = lambda: False) -> DrainSummary:
    """Classify every message up to the end offsets seen at start (or until should_stop), committing after writes.

    Batch k is classified and written on a worker thread while batch k+1 is fetched and decoded, and a batch's
    offsets are committed only once it is written. A drain that makes no progress for stall_timeout_s before
    reaching the end raises DrainStalled.
    """
    # A short session lets a rerun take over the partitions of a killed member within seconds.
    consumer = kafka.consumer(group, topic, max_poll_records=batch_size, session_timeout_ms=10_000)
    dlq = kafka.producer()
    summary = DrainSummary()
    start = time.perf_counter()
    end_offsets: dict[TopicPartition, int] = {}
    in_flight: _Batch | None = None
    # TensorFlow and the socket wait release the GIL, so the worker overlaps the main thread's decoding.
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference-write")
    try:
        partitions = consumer.partitions_for_topic(topic) or set()
        end_offsets = consumer.end_offsets([TopicPartition(topic, p) for p in partitions]) if stop_at_end else {}
        idle_since = time.monotonic()
        while True:
            # With a batch in flight, wait only briefly: if nothing more is buffered, commit that batch now.
            polled = consumer.poll(timeout_ms=50 if in_flight else 1000, max_records=batch_size)
            records = [r for part in polled.values() for r in part]
            batch = _decode(records, dlq, f"{topic}.dlq", summary) if records else None
            if in_flight is not None:
                _commit_written(in_flight, consumer, dlq, summary)
                in_flight = None
            if batch is not None:
                idle_since = time.monotonic()
                batch.stored = worker.submit(_store, batch.good, collection, classify, model_version)
                in_flight = batch
                summary.batches += 1
            if stop_at_end and _reached(consumer, end_offsets):
                break
            if stop_at_end and time.monotonic() - idle_since > stall_timeout_s:
                positions = {tp.partition: consumer.position(tp) for tp in consumer.assignment()}
                raise DrainStalled(
                    f"{topic}: no progress for {stall_timeout_s:.0f}s before the end offsets "
                    f"{ {tp.partition: n for tp, n in end_offsets.items()} } (positions {positions}); another member "
                    f"of group {group} may hold the partitions, or the broker is unreachable")
            if should_stop():
                break
        if in_flight is not None:
            _commit_written(in_flight, consumer, dlq, summary)
    finally:
        worker.shutdown(wait=True)  # never leave a write half-done; an uncommitted batch is redelivered next time
        dlq.close()
        consumer.close()
    summary.seconds = time.perf_counter() - start
    return summary


def model_classifier(model: "keras.Model") -> Classifier:
    """A Classifier over uint8 (N, 32, 32, 3) images: the model's arg-max class and its probability."""

    def classify(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities = np.asarray(model.predict_on_batch(images.astype("float32")))
        return probabilities.argmax(axis=1), probabilities.max(axis=1)

    return classify


def _reached(consumer, end_offsets: dict[TopicPartition, int]) -> bool:
    """True when every assigned partition's position is at or past its end offset seen at start."""
    assigned = consumer.assignment()
    if not assigned:
        return not any(end_offsets.values())
    return all(consumer.position(tp) >= end_offsets.get(tp, 0) for tp in assigned)


def _upsert(collection: Collection, docs: list[dict]) -> None:
    """Insert the documents; those whose _id exists already (replays, duplicates) are updated in place.

    Inserting first is much cheaper than an upsert per document on servers without an _id lookup for upserts.
    """
    try:
        collection.insert_many(docs, ordered=False)
        return
    except BulkWriteError as exc:
        others = [e for e in exc.details.get("writeErrors", []) if e.get("code") != 11000]
        if others:
            raise
        existing = [docs[e["index"]] for e in exc.details["writeErrors"]]
    collection.bulk_write([UpdateOne({"_id": d["_id"]}, {"$set": {k: v for k, v in d.items() if k != "_id"}},
                                     upsert=True) for d in existing], ordered=False)


@dataclass
class _Batch:
    """One polled batch: the decoded good messages, the offsets to commit once written, and the pending write."""

    good: list[tuple[object, ImageMessage]]
    offsets: dict[TopicPartition, OffsetAndMetadata]
    stored: Future | None = None


def _decode(records: list, dlq, dlq_topic: str, summary: DrainSummary) -> _Batch:
    """Decode a polled batch; bad messages go to the dead-letter topic with their reason."""
    good: list[tuple[object, ImageMessage]] = []
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    for record in records:
        offsets[TopicPartition(record.topic, record.partition)] = OffsetAndMetadata(record.offset + 1, "", -1)
        try:
            good.append((record, decode_image_message(record.value)))
        except BadMessage as exc:
            dlq.send(dlq_topic, key=record.key, value=json.dumps({
                "reason": exc.reason, "topic": record.topic, "partition": record.partition, "offset": record.offset,
                "value": (record.value or b"")[:4096].decode("utf-8", errors="replace"),
            }).encode())
            summary.dead_letters += 1
            kind = _reason_kind(exc.reason)
            summary.reasons[kind] = summary.reasons.get(kind, 0) + 1
    return _Batch(good, offsets)


def _store(good: list[tuple[object, ImageMessage]], collection: Collection, classify: Classifier,
           model_version: str) -> int:
    """Classify the good messages of a batch and write their documents; returns how many were written."""
    if not good:
        return 0
    predicted, confidence = classify(np.stack([m.image for _, m in good]))
    now = dt.datetime.now(dt.timezone.utc)
    _upsert(collection, [{
        "_id": m.id, "producer_id": m.producer_id, "seq": m.seq, "GroundTruth": m.ground_truth,
        "InferredValue": LABELS[int(p)], "confidence": float(c), "model_version": model_version,
        "inferred_at": now, "sent_at": dt.datetime.fromtimestamp(m.sent_at, dt.timezone.utc),
        "partition": r.partition, "offset": r.offset,
    } for (r, m), p, c in zip(good, predicted, confidence)])
    return len(good)


def _commit_written(batch: _Batch, consumer, dlq, summary: DrainSummary) -> None:
    """Wait for the batch's write (re-raising its error), make its dead letters durable, then commit its offsets."""
    summary.stored += batch.stored.result()
    dlq.flush()
    consumer.commit(batch.offsets)
