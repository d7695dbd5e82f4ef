"""Chaos on the real stack: a seeded stream with every poison pill while drains, the broker and a producer are killed.

At the end Mongo holds each good ID exactly once, every bad message is a dead letter with its reason, and the
committed offsets equal the end offsets; each test prints one summary line. MLASSETS_CHAOS_SEED picks the stream and
the kill points.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from kafka import TopicPartition
from kafka.errors import KafkaError

from mlassets.datasets.susy import FEATURES, find_susy, read_susy
from mlassets.names import dlq_topic
from mlassets.resources import KafkaResource, MongoResource
from mlassets.stack import StackSettings
from mlassets.stack.kafka import KafkaServer
from mlassets.stack.process import port_open, proc_stat
from mlassets.streaming.inference import COMMIT_NOT_TAKEN_LOG
from mlassets.streaming.offsets import GroupLag, group_lag
from mlassets.streaming.susy_messages import encode_train_rows
from mlassets_tests.iot_helpers import committed_offset, create_topic, dead_letters, small_model_id
from mlassets_tests.streaming_tests.chaos_stream import BAD_EVERY, chaos_message, good_id

REPO = Path(__file__).resolve().parents[2]
MLASSETS = str(Path(sys.executable).with_name("mlassets"))
STREAM = [sys.executable, "-m", "mlassets_tests.streaming_tests.chaos_stream"]
SEED = int(os.environ.get("MLASSETS_CHAOS_SEED", "14"))
MESSAGES = 20_000
PARTITIONS = 4
DEADLINE_S = 480
NEAR_KILL = 1_500  # committed messages before a kill point from which the test looks at a frozen drain


class Supervised:
    """A service process that is started again whenever it exits or is killed, output appended to a log file."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path) -> None:
        self.argv, self.env, self.log = argv, env, log
        self.exits: list[int] = []
        self.proc = self._start()

    def _start(self) -> subprocess.Popen:
        with open(self.log, "ab") as out:
            return subprocess.Popen(self.argv, env=self.env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        """SIGKILL it and start it again."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.proc = self._start()

    def keep_running(self) -> None:
        """Start it again if it exited on its own (an error while the broker was away, for example)."""
        if self.proc.poll() is not None:
            self.exits.append(self.proc.returncode)
            time.sleep(1)
            self.proc = self._start()

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def _wait_stopped(proc: subprocess.Popen) -> None:
    """Wait until the kernel reports proc stopped (or gone): SIGSTOP takes effect at its next kernel entry."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        fields = proc_stat(proc.pid)
        if fields is None or fields[0] in ("T", "t", "Z", "X"):
            return
        time.sleep(0.001)
    raise AssertionError(f"process {proc.pid} did not stop within 5 s of SIGSTOP")


@contextmanager
def frozen(*procs: subprocess.Popen) -> Iterator[None]:
    """The running processes stopped (SIGSTOP) and continued afterwards: what the test reads does not move meanwhile.

    A kill decided on a frozen drain finds the work it saw; one decided on a running drain raced it, and a drain
    that cleared its backlog between two looks of the test left the kill nothing to do.
    """
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        proc.send_signal(signal.SIGSTOP)
    try:
        for proc in running:
            _wait_stopped(proc)
        yield
    finally:
        for proc in running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)


def _kill_and_restart_broker(stack: StackSettings, errors: list[BaseException]) -> None:
    """SIGKILL the test broker's process group and start it again; a failure is appended to errors."""
    try:
        broker = KafkaServer(stack)
        pid = broker.proc.pid()
        assert pid is not None, "the test broker is not running"
        os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while port_open(stack.host, stack.kafka_port) and time.monotonic() < deadline:
            time.sleep(0.1)
        broker.start()
    except BaseException as exc:  # noqa: BLE001 - reported by the test's loop
        errors.append(exc)


def _committed(lag: GroupLag) -> int:
    """Messages the drain has read: it commits a batch's offsets once its documents and dead letters are written.

    (Counting the documents in Mongo instead took 0.5-1.8 s a look on the local stack.)
    """
    return sum(offset or 0 for offset in lag.committed.values())


def _end_offsets(kafka: KafkaResource, topic: str) -> dict[int, int]:
    consumer = kafka.consumer(None)
    try:
        return {tp.partition: n for tp, n in consumer.end_offsets(
            [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]).items()}
    finally:
        consumer.close()


def test_image_stream_survives_killed_drains_a_killed_broker_and_a_restarted_producer(
        stack: StackSettings, test_env: dict[str, str], unique: str, tmp_path: Path) -> None:
    rng = random.Random(SEED)
    topic, group, database = f"image_data_{unique}", f"g-{unique}", f"image_database_{unique}"
    kafka = create_topic(stack, topic, partitions=PARTITIONS)
    mongo = MongoResource(uri=stack.mongo_uri)
    model_id = small_model_id(mongo)
    collection = mongo.client()[database]["inferences"]
    bad = {f"bad-{i}": chaos_message(SEED, i)[2] for i in range(BAD_EVERY - 1, MESSAGES, BAD_EVERY)}
    good = {good_id(SEED, i) for i in range(MESSAGES) if f"bad-{i}" not in bad}
    # One kill point per band of the messages the drain has committed, each made on the frozen drain once it has
    # work left; the drain kills come before the broker's, which makes the producer buffer what is left of the
    # stream and send it all at the broker's return.
    drain_kills = [int(MESSAGES * rng.uniform(low, high)) for low, high in ((0.1, 0.25), (0.3, 0.45), (0.5, 0.65))]
    broker_kill = int(MESSAGES * rng.uniform(0.7, 0.8))
    producer_kill = int(MESSAGES * rng.uniform(0.15, 0.35))

    def producer(start: int) -> subprocess.Popen:
        with open(tmp_path / "producer.log", "ab") as out:
            return subprocess.Popen([*STREAM, "produce", "--bootstrap", stack.kafka_bootstrap, "--topic", topic,
                                     "--seed", str(SEED), "--start", str(start), "--count", str(MESSAGES),
                                     "--partitions", str(PARTITIONS), "--rate", "2000"],
                                    cwd=REPO, stdout=out, stderr=subprocess.STDOUT)

    sender = producer(0)
    service = Supervised([MLASSETS, "stream", "infer", "--model-id", model_id, "--topic", topic, "--group", group,
                          "--database", database, "--batch-size", "64"], {**os.environ, **test_env},
                         tmp_path / "service.log")
    kills = producer_restarts = frozen_looks = deferred = 0
    broker_restart: threading.Thread | None = None  # in the background: the drain kills go on meanwhile
    broker_errors: list[BaseException] = []
    deadline = time.monotonic() + DEADLINE_S
    try:
        while True:
            time.sleep(0.3)
            assert time.monotonic() < deadline, (f"not done after {DEADLINE_S} s; service log:\n"
                                                 + (tmp_path / "service.log").read_text()[-3000:])
            assert not broker_errors, broker_errors
            service.keep_running()
            try:
                lag = group_lag(kafka, topic, group)
            except KafkaError:  # the coordinator may still be loading after the broker's restart
                continue
            if not producer_restarts and sum(lag.end.values()) >= producer_kill:
                assert sender.poll() is None, "the producer finished before it was killed; nothing was tested"
                sender.send_signal(signal.SIGKILL)
                sender.wait(30)
                # partition p holds messages p, p + 4, ... in order: resume at the first one any partition lacks
                end = _end_offsets(kafka, topic)
                sender = producer(min(p + PARTITIONS * end[p] for p in range(PARTITIONS)))
                producer_restarts += 1
            points = drain_kills[kills:] + ([broker_kill] if broker_restart is None else [])
            if points and _committed(lag) >= min(points) - NEAR_KILL:
                with frozen(sender, service.proc):
                    try:
                        lag = group_lag(kafka, topic, group)
                    except KafkaError:
                        continue
                    frozen_looks += 1
                    done = _committed(lag)
                    # A kill waits for a look at which the frozen drain has work left (it kept up with the producer
                    # otherwise); with the stream all sent and read before every kill was made, nothing was tested.
                    assert not (lag.end and lag.total == 0 and sender.poll() == 0 and producer_restarts), (
                        f"the drain read the whole stream before every kill was made ({kills} of {len(drain_kills)} "
                        f"drain kills, broker {'not ' if broker_restart is None else ''}killed); nothing was tested")
                    deferred += done >= min(points) and lag.total == 0
                    if kills < len(drain_kills) and done >= drain_kills[kills] and lag.total > 0:
                        service.kill()
                        kills += 1
                    if broker_restart is None and done >= broker_kill and lag.total > 0:
                        broker_restart = threading.Thread(target=_kill_and_restart_broker,
                                                          args=(stack, broker_errors))
                        broker_restart.start()
            if sender.poll() is not None:
                assert sender.returncode == 0, (tmp_path / "producer.log").read_text()[-3000:]
                if (producer_restarts and kills == len(drain_kills) and broker_restart is not None
                        and not broker_restart.is_alive() and lag.end and lag.total == 0):
                    break
    finally:
        service.stop()
        if sender.poll() is None:
            sender.kill()
        if broker_restart is not None:
            broker_restart.join(120)

    final = group_lag(kafka, topic, group)
    ids = [d["_id"] for d in collection.find({}, {"_id": 1})]
    lost, unexpected, duplicated = good - set(ids), set(ids) - good, len(ids) - len(set(ids))
    letters = dead_letters(kafka, topic)
    reasons: dict[str, list[str]] = {}
    for letter in letters:
        reasons.setdefault(letter["key"], []).append(letter["reason"])
    dead_lettered = {key for key, prefix in bad.items() if any(r.startswith(prefix) for r in reasons.get(key, []))}
    log = (tmp_path / "service.log").read_text()
    not_taken = log.count(COMMIT_NOT_TAKEN_LOG)
    print(f"chaos image_data: {MESSAGES} messages ({len(good)} good, {len(bad)} bad), {kills} drain kills, "
          f"{len(service.exits)} drain exits, {not_taken} commits not taken (the drain went on), broker "
          f"killed and restarted 1, producer restarted {producer_restarts}, {frozen_looks} looks at the frozen drain "
          f"({deferred} with a kill due and no work left), lost {len(lost)}, duplicated {duplicated}, dead-lettered "
          f"{len(dead_lettered)} of {len(bad)} ({len(letters)} letters)")
    assert not service.exits, f"the service exited on its own (codes {service.exits}); its log:\n{log[-3000:]}"
    assert not lost and not unexpected and duplicated == 0
    assert dead_lettered == set(bad), sorted(set(bad) - dead_lettered)[:5]
    assert set(reasons) == set(bad), "a good message was dead-lettered"
    assert {p: final.committed[p] for p in final.end} == final.end


SUSY_BAD: list[tuple[bytes | None, bytes, str]] = [
    (b"1.0", b"1,2,3", "wrong field count"),
    (b"0.0", b",".join([b"x"] * 18), "non-numeric value"),
    (b"1.0", b",".join([b"1e39"] + [b"1"] * 17), "non-finite value"),
    (b"0.0", b",".join([b"1"] * 17 + [b"nan"]), "non-finite value"),
    (None, b",".join([b"1"] * 18), "missing key"),
    (b"signal", b",".join([b"1"] * 18), "invalid key"),
    (b"\xff", b",".join([b"1"] * 18), "invalid key"),
    (b"1.0", b"", "empty value"),
    (b"1.0", b",".join([b"\xff"] * 18), "non-numeric value"),
    (b"0.0", b"[" * 5000, "wrong field count"),
]


def test_train_data_read_is_exact_after_the_trainer_is_killed_mid_read(stack: StackSettings, data_dir: Path,
                                                                       unique: str) -> None:
    topic, group = f"trainData_{unique}", f"g-{unique}"
    kafka = create_topic(stack, topic, partitions=PARTITIONS)
    frame = read_susy(find_susy(data_dir))
    labels = np.tile(frame["label"].to_numpy(), 5)
    features = np.tile(frame[list(FEATURES)].to_numpy(), (5, 1))
    stream: list[tuple[bytes | None, bytes, str | None]] = []
    for key, value in encode_train_rows(labels, features):
        if len(stream) % BAD_EVERY == BAD_EVERY - 1:
            stream.append(SUSY_BAD[(len(stream) // BAD_EVERY) % len(SUSY_BAD)])
        stream.append((key, value, None))
    producer = kafka.producer()
    for i, (key, value, _) in enumerate(stream):
        producer.send(topic, key=key, value=value, partition=i % PARTITIONS)
    producer.close()
    ranges = {p: (0, len(range(p, len(stream), PARTITIONS))) for p in range(PARTITIONS)}
    assert _end_offsets(kafka, topic) == {p: high for p, (_, high) in ranges.items()}
    bad = {(i % PARTITIONS, i // PARTITIONS): reason for i, (_, _, reason) in enumerate(stream) if reason}
    read = [*STREAM, "read", "--bootstrap", stack.kafka_bootstrap, "--topic", topic, "--group", group,
            "--ranges", json.dumps(ranges)]

    trainer = subprocess.Popen(read, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while not sum(_end_offsets(kafka, dlq_topic(topic)).values()):  # its first dead letter: it is reading
        assert trainer.poll() is None, trainer.stdout.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the trainer sent no dead letter in 120 s"
        time.sleep(0.02)
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(30)
    assert all(committed_offset(kafka, topic, group, p) is None for p in ranges), (
        "the trainer was killed after its commit; nothing was tested")
    letters_of_the_killed_read = sum(_end_offsets(kafka, dlq_topic(topic)).values())

    rerun = subprocess.run(read, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    result = json.loads(rerun.stdout.strip().splitlines()[-1])
    letters = dead_letters(kafka, topic)
    found = {(letter["partition"], letter["offset"]) for letter in letters
             if letter["reason"].startswith(bad.get((letter["partition"], letter["offset"]), "\0"))}
    expected_sum = float(features.astype(np.float32).astype(np.float64).sum())
    print(f"chaos trainData: {len(stream)} messages ({len(labels)} good, {len(bad)} bad), trainer killed 1 "
          f"mid-read ({letters_of_the_killed_read} letters sent before the kill), rows read {result['rows']} of "
          f"{len(labels)}, dead-lettered {len(found)} of {len(bad)} ({len(letters)} letters)")
    assert result["rows"] == len(labels) and result["labels_sum"] == int(labels.sum())
    assert np.isclose(result["features_sum"], expected_sum, rtol=1e-9)
    assert {int(p): tuple(r) for p, r in result["ranges"].items()} == ranges
    assert found == set(bad) and len(letters) >= len(bad)
    assert {p: committed_offset(kafka, topic, group, p) for p in ranges} == {p: high for p, (_, high) in ranges.items()}
