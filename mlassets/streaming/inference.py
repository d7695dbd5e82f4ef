"""The batched inference loop: drain `image_data` as a consumer group, classify, upsert, then commit.

`classify_stream` is the one entry point of the inference_records asset and of `mlassets stream infer`.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from kafka.producer.future import FutureRecordMetadata
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import BulkWriteError

from mlassets.datasets.cifar10 import LABELS
from mlassets.names import CIFAR_MODEL_COLLECTION, IMAGE_DATABASE, IMAGE_TOPIC, INFERENCE_COLLECTION, INFERENCE_GROUP
from mlassets.resources.kafka import KafkaResource
from mlassets.streaming.dead_letters import DeadLetters
from mlassets.streaming.drain_consumer import CommitNotTaken, DrainConsumer, drain_consumer
from mlassets.streaming.image_messages import ImageMessage, decode_image_message
from mlassets.tables.tallies import record_tallies

if TYPE_CHECKING:
    import keras

    from mlassets.resources.mongo import MongoResource

Classifier = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
PIPELINE_DEPTH = 2  # batches classified or written while the next is fetched and decoded
# logged after each CommitNotTaken: the chaos test counts these lines in the service's log
COMMIT_NOT_TAKEN_LOG = "the drain goes on (a later commit covers the batch, or it is read again)"
log = logging.getLogger(__name__)


@dataclass
class DrainSummary:
    """Counts of one drain: stored documents, dead letters by reason, batches, seconds and the Kafka client."""

    stored: int = 0
    dead_letters: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    batches: int = 0
    seconds: float = 0.0
    client: str = ""
    commits_not_taken: int = 0  # a later commit covers those batches, or they are read and written again


class DrainStalled(RuntimeError):
    """A drain that stopped making progress before the end offsets it set out to reach."""


def drain_inference(kafka: KafkaResource, collection: Collection, classify: Classifier, model_version: str,
                    topic: str = IMAGE_TOPIC, group: str = INFERENCE_GROUP, batch_size: int = 256,
                    stop_at_end: bool = True, stall_timeout_s: float = 90.0,
                    should_stop: Callable[[], bool] = lambda: False, client: str | None = None) -> DrainSummary:
    """Classify every message up to the end offsets seen at start (or until should_stop), committing after writes.

    Three stages overlap: batch k is written while batch k+1 is classified and batch k+2 fetched and decoded. A
    batch's offsets are committed only once its documents are written (acknowledged) and its dead letters
    acknowledged, in order; after a failed classification or write no later batch is written. A message that fails
    to decode in any way is a dead letter, never a failed batch. A drain that makes no progress for stall_timeout_s
    before reaching the end raises DrainStalled. client: the Kafka client that consumes (drain_consumer's choice).
    """
    if not collection.write_concern.acknowledged:
        raise ValueError(f"{collection.full_name}: unacknowledged write concern (w=0); the drain commits offsets "
                         "only after acknowledged writes")
    consumer = drain_consumer(kafka, group, topic, batch_size, client)
    letters = DeadLetters(kafka.producer())
    summary = DrainSummary(client=consumer.client)
    start = time.perf_counter()
    in_flight: deque[_Batch] = deque()
    # TensorFlow and the socket waits release the GIL, so the stages' threads overlap the main thread's decoding.
    stages = _Stages(collection, classify, model_version)
    try:
        end_offsets = consumer.end_offsets() if stop_at_end else {}
        idle_since = time.monotonic()
        while True:
            # With batches in flight, wait only briefly: if nothing more is buffered, commit them now.
            records = consumer.poll(batch_size, 0.05 if in_flight else 1.0)
            batch = _decode(records, letters, summary) if records else None
            while in_flight and (batch is None or len(in_flight) >= PIPELINE_DEPTH):
                _commit_written(in_flight.popleft(), consumer, letters, summary)
            if batch is not None:
                idle_since = time.monotonic()
                batch.stored = stages.submit(batch.good)
                in_flight.append(batch)
                summary.batches += 1
            if stop_at_end and _reached(consumer, end_offsets):
                break
            if stop_at_end and time.monotonic() - idle_since > stall_timeout_s:
                raise DrainStalled(
                    f"{topic}: no progress for {stall_timeout_s:.0f}s before the end offsets {end_offsets} (positions "
                    f"{consumer.positions()}); another member of group {group} may hold the partitions, or the broker "
                    "is unreachable")
            if should_stop():
                break
        while in_flight:
            _commit_written(in_flight.popleft(), consumer, letters, summary)
    finally:
        stages.shutdown()  # never leave a write half-done; an uncommitted batch is redelivered next time
        letters.close()
        consumer.close()
    summary.seconds = time.perf_counter() - start
    return summary


def classify_stream(kafka: KafkaResource, mongo: "MongoResource", model_id: str, database: str = IMAGE_DATABASE,
                    on_loaded: Callable[[], None] = lambda: None, **drain: Any) -> DrainSummary:
    """Load `model_id` from the CIFAR model store and drain with it into `<database>.inferences`; `drain` holds
    drain_inference's settings (topic, group, batch size, stop conditions).

    on_loaded is called once the model is loaded, just before the drain starts (the service's signal handlers).
    """
    model = mongo.model_store(IMAGE_DATABASE, CIFAR_MODEL_COLLECTION).load(model_id).model
    on_loaded()
    return drain_inference(kafka, mongo.client()[database][INFERENCE_COLLECTION], model_classifier(model), model_id,
                           **drain)


def model_classifier(model: "keras.Model") -> Classifier:
    """A Classifier over uint8 (N, 32, 32, 3) images: the model's arg-max class and its probability."""

    def classify(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probabilities = np.asarray(model.predict_on_batch(images.astype("float32")))
        return probabilities.argmax(axis=1), probabilities.max(axis=1)

    return classify


def _reached(consumer: DrainConsumer, end_offsets: dict[int, int]) -> bool:
    """True when every assigned partition's position is at or past its end offset seen at start."""
    positions = consumer.positions()
    if not positions:
        return not any(end_offsets.values())
    return all(position is not None and position >= end_offsets.get(p, 0) for p, position in positions.items())


def _upsert(collection: Collection, docs: list[dict]) -> None:
    """Insert the documents; those whose _id exists already (replays, duplicates) are updated in place.

    Inserting first is much cheaper than an upsert per document on servers without an _id lookup for upserts.
    """
    try:
        collection.insert_many(docs, ordered=False)
        return
    except BulkWriteError as exc:
        existing = [docs[i] for i in duplicate_indexes(exc)]
    collection.bulk_write([UpdateOne({"_id": d["_id"]}, {"$set": {k: v for k, v in d.items() if k != "_id"}},
                                     upsert=True) for d in existing], ordered=False)


def duplicate_indexes(error: BulkWriteError) -> list[int]:
    """The indexes of the documents an unordered insert refused only because their _id exists.

    Re-raises the error when anything else went wrong, write-concern errors included: those writes are not durable.
    """
    details = error.details or {}
    if details.get("writeConcernErrors") or any(e.get("code") != 11000 for e in details.get("writeErrors", [])):
        raise error
    return [e["index"] for e in details.get("writeErrors", [])]


@dataclass
class _Batch:
    """One polled batch: the decoded good messages, the offsets to commit (the next offset to read of each
    partition), the pending write and dead letters."""

    good: list[tuple[object, ImageMessage]]
    offsets: dict[int, int]
    letters: list[FutureRecordMetadata]
    stored: Future | None = None


def _decode(records: list, letters: DeadLetters, summary: DrainSummary) -> _Batch:
    """Decode a polled batch; a message that fails in any way goes to the dead-letter topic with the reason."""
    batch = _Batch([], {}, [])
    now = time.time()
    for record in records:
        batch.offsets[record.partition] = record.offset + 1
        try:
            batch.good.append((record, decode_image_message(record.value, now)))
        except Exception as exc:  # noqa: BLE001 - one message must never stop the drain
            batch.letters.append(letters.reject(record, exc, summary.reasons))
            summary.dead_letters += 1
    return batch


class _Stages:
    """The classify and write stages of the drain, one thread each, so that batch k is written while batch k+1 is
    classified; each runs its batches in order, and none runs after a failure of either."""

    def __init__(self, collection: Collection, classify: Classifier, model_version: str) -> None:
        self.collection, self.classify, self.model_version = collection, classify, model_version
        self.classifier = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference-classify")
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference-write")
        self.failed = threading.Event()

    def submit(self, good: list[tuple[object, ImageMessage]]) -> Future:
        """Classify then write one batch's good messages; the future gives how many documents were written, or
        raises the batch's own error (its classification's or its write's)."""
        predicted = self.classifier.submit(self._guarded, self._classify, good)
        return self.writer.submit(self._write, good, predicted)

    def _guarded(self, stage: Callable[..., Any], *args: Any) -> Any:
        if self.failed.is_set():
            raise RuntimeError("not run: an earlier batch of this drain failed")
        try:
            return stage(*args)
        except BaseException:
            self.failed.set()
            raise

    def _classify(self, good: list[tuple[object, ImageMessage]]) -> tuple[np.ndarray, np.ndarray] | None:
        return self.classify(np.stack([m.image for _, m in good])) if good else None

    def _write(self, good: list[tuple[object, ImageMessage]], predicted: Future) -> int:
        classes = predicted.result()  # first: a failed classification raises its own error
        return self._guarded(self._insert, good, classes)

    def _insert(self, good: list[tuple[object, ImageMessage]], classes: tuple[np.ndarray, np.ndarray] | None) -> int:
        if classes is None:
            return 0
        now = dt.datetime.now(dt.timezone.utc)
        _upsert(self.collection, [inference_document(r, m, int(p), float(c), self.model_version, now)
                                  for (r, m), p, c in zip(good, *classes)])
        return len(good)

    def shutdown(self) -> None:
        """Wait for the batch being classified and the one being written; drop the ones not started."""
        self.classifier.shutdown(wait=True, cancel_futures=True)
        self.writer.shutdown(wait=True, cancel_futures=True)


def inference_document(record, message: ImageMessage, predicted: int, confidence: float, model_version: str,
                       inferred_at: dt.datetime) -> dict:
    """The `inferences` document of one classified message, keyed by its ID, with its Kafka partition and offset and
    the tallies the day tables count it by."""
    return {
        "_id": message.id, "producer_id": message.producer_id, "seq": message.seq,
        "GroundTruth": message.ground_truth, "InferredValue": LABELS[predicted], "confidence": confidence,
        "model_version": model_version, "inferred_at": inferred_at,
        "sent_at": dt.datetime.fromtimestamp(message.sent_at, dt.timezone.utc),
        "partition": record.partition, "offset": record.offset,
        **record_tallies(inferred_at, message.producer_id, message.ground_truth, LABELS[predicted]),
    }


def _commit_written(batch: _Batch, consumer: DrainConsumer, letters: DeadLetters, summary: DrainSummary) -> None:
    """Wait for the batch's write and its dead letters (re-raising their errors), then commit its offsets.

    A commit the group cannot take now (a rebalance left this member behind, the coordinator is away) leaves the
    drain running: the batch is written, so a later commit covers it; until one does, its messages are read again and
    rewrite the same documents (and send the same dead letters again).
    """
    summary.stored += batch.stored.result()
    letters.confirm(batch.letters)
    try:
        consumer.commit(batch.offsets)
    except CommitNotTaken as exc:
        summary.commits_not_taken += 1
        log.warning("%s; %s", exc, COMMIT_NOT_TAKEN_LOG)
