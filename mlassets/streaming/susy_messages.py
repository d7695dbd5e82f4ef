"""The `trainData` wire format (key = label text, value = 18 comma-separated features), its producer and reader."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from kafka import TopicPartition
from kafka.admin import NewTopic
from kafka.errors import OffsetOutOfRangeError, TopicAlreadyExistsError
from kafka.producer.future import FutureRecordMetadata
from kafka.structs import OffsetAndMetadata

from mlassets.datasets.susy import FLOAT32_OVERFLOW
from mlassets.datasets.susy import N_FEATURES
from mlassets.names import TRAINER_GROUP
from mlassets.resources.kafka import KafkaResource
from mlassets.streaming.dead_letters import BadMessage, DeadLetters, rejects_any_error
from mlassets.streaming.train_producer import client_for, encode_rows, produce_rows

LABEL_KEYS = {b"1.0": 1, b"0.0": 0}


class RangeUnavailable(RuntimeError):
    """A requested offset range the broker does not hold (deleted by retention, or never written)."""


def encode_train_rows(labels: np.ndarray, features: np.ndarray) -> list[tuple[bytes, bytes]]:
    """The (key, value) of each row: key `"1.0"`/`"0.0"`, value the float32 features as their shortest round-trip
    text, comma-separated."""
    features = np.asarray(features, dtype=np.float32)
    _check_shape(features)
    return encode_rows(labels, features)


@rejects_any_error
def decode_train_message(key: bytes | None, value: bytes | None) -> tuple[int, np.ndarray]:
    """The label (0/1) and the 18 finite float32 features of one message; BadMessage says what is wrong."""
    if key is None or key == b"":
        raise BadMessage("missing key: expected the label text 1.0 or 0.0")
    label = LABEL_KEYS.get(key.strip())
    if label is None:
        try:
            number = float(key)
        except ValueError:
            number = None
        if number not in (0.0, 1.0):
            raise BadMessage(f"invalid key: {key[:40]!r} is not the label text 1.0 or 0.0")
        label = int(number)
    if not value:
        raise BadMessage("empty value: expected 18 comma-separated features")
    fields = value.split(b",")
    if len(fields) != N_FEATURES:
        raise BadMessage(f"wrong field count: expected {N_FEATURES}, got {len(fields)}")
    try:
        numbers = [float(f) for f in fields]
    except ValueError:
        bad = next(f for f in fields if not _is_float(f))
        raise BadMessage(f"non-numeric value: {bad[:40]!r}") from None
    if not all(-FLOAT32_OVERFLOW < n < FLOAT32_OVERFLOW for n in numbers):  # NaN fails the comparison too
        raise BadMessage("non-finite value: NaN or infinity among the features as float32")
    return label, np.asarray(numbers, dtype=np.float32)


def _is_float(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def ensure_topic(kafka: KafkaResource, topic: str, partitions: int) -> int:
    """Create the topic when absent; returns its partition count."""
    admin = kafka.admin()
    try:
        admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    consumer = kafka.consumer(None)
    try:
        deadline = time.monotonic() + 30
        while not (found := consumer.partitions_for_topic(topic)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"topic {topic} has no partitions after 30 s")
            time.sleep(0.2)
            consumer.topics()  # refresh metadata
        return len(found)
    finally:
        consumer.close()


@dataclass
class ProduceResult:
    """What one production wrote: per partition the first and one-past-last offsets, rows, seconds, processes, client."""

    ranges: dict[int, tuple[int, int]] = field(default_factory=dict)
    rows: int = 0
    seconds: float = 0.0
    processes: int = 1
    client: str = ""


class ProducerProcessError(RuntimeError):
    """A producer process failed or died: the rows of its partitions may be missing, so no ranges are recorded."""


def produce_train_rows(kafka: KafkaResource, topic: str, labels: np.ndarray, features: np.ndarray,
                       partitions: int, batch_rows: int = 50_000, processes: int = 1) -> ProduceResult:
    """Send every row (row i to partition i mod partitions) through idempotent batching producers.

    processes > 1 (at most one per partition) splits the rows over that many producer processes, process w owning
    the partitions p with p mod processes == w: each partition has one producer, so its records keep their order and
    its range stays one contiguous run. ProducerProcessError when any process fails or dies.
    """
    features = np.asarray(features, dtype=np.float32)
    _check_shape(features)
    processes = max(1, min(processes, partitions))
    targets = (np.arange(len(labels)) % partitions).astype(np.int32)
    start = time.perf_counter()
    config = kafka.producer_config()
    if processes == 1:
        ranges, _ = produce_rows(config, topic, labels, features, targets, batch_rows)
    else:
        ranges = _produce_in_processes(config, topic, np.asarray(labels, dtype=np.int8), features, targets,
                                       batch_rows, processes)
    rows = sum(high - low for low, high in ranges.values())
    return ProduceResult(ranges, rows, time.perf_counter() - start, processes, client_for(config))


def _produce_in_processes(config: dict, topic: str, labels: np.ndarray, features: np.ndarray, targets: np.ndarray,
                          batch_rows: int, processes: int) -> dict[int, tuple[int, int]]:
    """Run `python -m mlassets.streaming.train_producer` once per process on its partitions' rows; merged ranges."""
    owner = targets % processes
    running: list[tuple[int, subprocess.Popen]] = []
    ranges: dict[int, tuple[int, int]] = {}
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="train-producer-") as folder:
        try:
            for w in range(processes):
                mine = owner == w
                path = Path(folder) / f"rows-{w}.npz"
                np.savez(path, labels=labels[mine], features=features[mine], targets=targets[mine])
                with open(Path(folder) / f"stderr-{w}.txt", "w") as errors:  # a file: a full pipe cannot block it
                    child = subprocess.Popen([sys.executable, "-m", "mlassets.streaming.train_producer"],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True)
                running.append((w, child))
                try:
                    child.stdin.write(json.dumps({"config": config, "topic": topic, "rows": str(path),
                                                  "batch_rows": batch_rows}))
                    child.stdin.close()
                except BrokenPipeError:
                    pass  # it died before reading its job: reported with its exit status below
            for w, child in running:
                out = child.stdout.read()
                child.wait()
                err = (Path(folder) / f"stderr-{w}.txt").read_text()
                owned = sorted(set(targets[owner == w].tolist()))
                if child.returncode != 0:
                    how = (f"killed by signal {-child.returncode}" if child.returncode < 0
                           else f"exit {child.returncode}")
                    failures.append(f"process {w} (partitions {owned}) {how}: {_child_error(out, err)}")
                    continue
                written = json.loads(out.splitlines()[-1])["ranges"]
                ranges.update({int(p): (low, high) for p, (low, high) in written.items()})
        finally:
            for _, child in running:
                if child.poll() is None:
                    child.kill()
                    child.wait()
    if failures:
        raise ProducerProcessError(f"{len(failures)} of {processes} producer processes for {topic} failed, so their "
                                   f"rows may be missing and no ranges are recorded: {'; '.join(failures)}")
    return ranges


def _child_error(out: str, err: str) -> str:
    """A failed producer process's own error line from its stdout, else the last line of its stderr."""
    try:
        return str(json.loads(out.strip().splitlines()[-1])["error"])[-400:]
    except (IndexError, ValueError, KeyError, TypeError):  # killed, or died before it could print its error
        tail = err.strip().splitlines()
        return tail[-1][-400:] if tail else "no error output"


def _check_shape(features: np.ndarray) -> None:
    if features.ndim != 2 or features.shape[1] != N_FEATURES:
        raise ValueError(f"expected an (N, {N_FEATURES}) feature array, got {features.shape}")


@dataclass
class TrainRows:
    """Rows read from the topic: labels, features, dead letters by reason, and per partition the offsets read."""

    labels: np.ndarray
    features: np.ndarray
    dead_letters: int
    reasons: dict[str, int]
    ranges: dict[int, tuple[int, int]]
    seconds: float


def read_train_rows(kafka: KafkaResource, topic: str, ranges: dict[int, tuple[int, int]],
                    group: str = TRAINER_GROUP, idle_timeout_s: float = 30.0, batch_size: int = 5000) -> TrainRows:
    """Read exactly the offsets [start, end) of each partition as `group`; bad messages go to `<topic>.dlq`.

    RangeUnavailable when the broker does not hold a whole range (retention deleted its start, or its end was never
    written) or when the offsets read are not the requested ones: never fewer rows in silence. The group's offsets
    are committed once the dead letters are acknowledged.
    """
    # "none": an offset deleted while we read raises instead of silently resetting to the log start
    consumer = kafka.consumer(group, max_poll_records=batch_size, fetch_max_bytes=32 * 2**20,
                              auto_offset_reset="none")
    letters = DeadLetters(kafka.producer())
    sent: list[FutureRecordMetadata] = []
    wanted = {TopicPartition(topic, p): (low, high) for p, (low, high) in ranges.items() if high > low}
    read: dict[TopicPartition, list[int]] = {}  # first offset, one past the last, messages
    labels: list[int] = []
    features: list[np.ndarray] = []
    reasons: dict[str, int] = {}
    start = time.perf_counter()
    try:
        consumer.assign(list(wanted))
        _check_held(consumer, topic, wanted)
        for tp, (low, _) in wanted.items():
            consumer.seek(tp, low)
        pending = set(wanted)
        idle_since = time.monotonic()
        while pending:
            try:
                polled = consumer.poll(timeout_ms=1000)
            except OffsetOutOfRangeError as exc:
                raise RangeUnavailable(f"{topic}: offsets {wanted} were deleted while being read (retention): "
                                       f"{exc}") from exc
            for tp, records in polled.items():
                high = wanted[tp][1]
                inside = records if records[-1].offset < high else [r for r in records if r.offset < high]
                if not inside:
                    continue
                seen = read.setdefault(tp, [inside[0].offset, 0, 0])
                seen[1], seen[2] = inside[-1].offset + 1, seen[2] + len(inside)
                for record in inside:
                    try:
                        label, row = decode_train_message(record.key, record.value)
                    except Exception as exc:  # noqa: BLE001 - one message must never stop the read
                        sent.append(letters.reject(record, exc, reasons))
                        continue
                    labels.append(label)
                    features.append(row)
            if polled:
                idle_since = time.monotonic()
            for tp in list(pending):
                if consumer.position(tp) >= wanted[tp][1]:
                    consumer.pause(tp)
                    pending.discard(tp)
            if pending and time.monotonic() - idle_since > idle_timeout_s:
                missing = ", ".join(f"partition {tp.partition} at {consumer.position(tp)} of {wanted[tp]}"
                                    for tp in sorted(pending))
                raise RangeUnavailable(f"{topic}: no messages for {idle_timeout_s:.0f} s while reading {missing} "
                                       "(deleted by retention, or the range was never written)")
        gaps = {tp.partition: (tuple(read.get(tp, ())), wanted[tp]) for tp in wanted
                if read.get(tp) != [wanted[tp][0], wanted[tp][1], wanted[tp][1] - wanted[tp][0]]}
        if gaps:
            raise RangeUnavailable(f"{topic}: the offsets read (first, end, messages) differ from those requested, "
                                   f"per partition: {gaps}")
        letters.confirm(sent)  # dead letters are durable before the group's offsets move past them
        consumer.commit({tp: OffsetAndMetadata(high, "", -1) for tp, (_, high) in wanted.items()})
    finally:
        letters.close()
        consumer.close()
    array = np.stack(features) if features else np.empty((0, N_FEATURES), dtype=np.float32)
    return TrainRows(np.asarray(labels, dtype=np.int8), array, sum(reasons.values()), reasons,
                     {tp.partition: (first, end) for tp, (first, end, _) in read.items()},
                     time.perf_counter() - start)


def _check_held(consumer, topic: str, wanted: dict[TopicPartition, tuple[int, int]]) -> None:
    """RangeUnavailable, before anything is read, when the broker's log does not span every requested range."""
    first, end = consumer.beginning_offsets(list(wanted)), consumer.end_offsets(list(wanted))
    problems = [f"partition {tp.partition} [{low}, {high}) requested, the broker keeps only [{first[tp]}, {end[tp]})"
                + (" (the start was deleted by retention)" if first[tp] > low else " (the range was never written)")
                for tp, (low, high) in sorted(wanted.items()) if first[tp] > low or end[tp] < high]
    if problems:
        raise RangeUnavailable(f"{topic}: {'; '.join(problems)}; nothing was read")
