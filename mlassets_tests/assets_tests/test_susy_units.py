"""Pure SUSY helpers on small inputs, and the trainData_new_rows sensor against the real Kafka."""

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from dagster import AssetMaterialization, MetadataValue, RunRequest, SkipReason, build_sensor_context, instance_for_test
from sklearn.metrics import roc_auc_score

from mlassets.assets.susy.model import read_ranges
from mlassets.assets.susy.scaled import chunk_row_ids
from mlassets.assets.susy.sensors import trainData_new_rows
from mlassets.assets.susy.train_topic import offset_ranges_frame
from mlassets.datasets.susy import FEATURES
from mlassets.models import susy_mlp
from mlassets.models.serialization import model_to_bytes, sha256_hex
from mlassets.models.susy_mlp import StandardScaler, build_susy_mlp, confusion, histogram_auc, score_frames
from mlassets.resources import KafkaResource
from mlassets.streaming.susy_messages import encode_train_rows, ensure_topic


def test_histogram_auc_matches_the_exact_auc() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1)
    counts = confusion(labels, scores, 4096)
    assert histogram_auc(counts.positive_hist, counts.negative_hist) == pytest.approx(roc_auc_score(labels, scores),
                                                                                      abs=1e-3)
    assert counts.rows == 5000 and counts.tp + counts.fn == labels.sum()


@pytest.mark.parametrize(("n_test", "rows", "block"), [(10, 35, 8), (7, 7, 100), (5, 3, 2)])
def test_chunk_rows_are_whole_copies_of_the_test_split(n_test, rows, block) -> None:
    blocks = list(chunk_row_ids(n_test, rows, seed=1, block=block))
    ids = np.concatenate(blocks)
    assert len(ids) == rows and max(len(b) for b in blocks) <= block
    counts = np.bincount(ids, minlength=n_test)
    assert counts.max() - counts.min() <= 1
    assert (np.concatenate(list(chunk_row_ids(n_test, rows, 1, block))) == ids).all()


def test_read_ranges_moves_only_the_ends() -> None:
    recorded = offset_ranges_frame("trainData", {0: (10, 20), 1: (5, 9)})
    assert read_ranges(recorded, None) == ("trainData", {0: (10, 20), 1: (5, 9)})
    assert read_ranges(recorded, {"0": 30, "2": 4}) == ("trainData", {0: (10, 30), 1: (5, 9), 2: (0, 4)})
    with pytest.raises(ValueError, match="before its recorded start"):
        read_ranges(recorded, {"0": 3})


def test_scorer_loads_once_per_process_and_refuses_a_changed_blob(monkeypatch) -> None:
    monkeypatch.setattr(susy_mlp, "_SCORERS", {})
    monkeypatch.setattr(susy_mlp, "_LOADS", {"count": 0})
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 18)).astype(np.float32)
    scaler = StandardScaler.fit(features)
    architecture, blob = model_to_bytes(build_susy_mlp(), scaler.extras())
    payload = SimpleNamespace(value=(architecture, blob, sha256_hex(blob)))
    frames = [pd.DataFrame({"chunk": "chunk-00", "label": rng.integers(0, 2, 100), **dict(zip(FEATURES, part.T))})
              for part in np.split(features, 3)]
    out = pd.concat(score_frames(iter(frames), "susy_mlp:v9", payload, threads=0, bins=64))
    assert out["rows"].sum() == 300 and out["model_loads"].tolist() == [1, 1, 1]
    bad = SimpleNamespace(value=(architecture, blob + b"x", sha256_hex(blob)))
    with pytest.raises(ValueError, match="tampered"):
        list(score_frames(iter(frames), "susy_mlp:v10", bad, threads=0, bins=64))


def test_sensor_requests_a_retrain_for_new_messages_only(stack, unique) -> None:
    kafka = KafkaResource(bootstrap_servers=stack.kafka_bootstrap)
    topic = f"trainData-{unique}"
    ensure_topic(kafka, topic, 2)
    producer = kafka.producer()
    rows = encode_train_rows(np.array([1, 0, 1]), np.ones((3, 18), dtype=np.float32))
    for i, (key, value) in enumerate(rows):
        producer.send(topic, key=key, value=value, partition=i % 2)
    producer.flush()
    with instance_for_test() as instance:
        context = build_sensor_context(instance=instance, resources={"kafka": kafka})
        assert isinstance(trainData_new_rows(context), SkipReason)  # no model yet
        instance.report_runless_asset_event(AssetMaterialization("susy_model", metadata={
            "trained_to_offsets": MetadataValue.json({"topic": topic, "offsets": {"0": 2, "1": 1}})}))
        skip = trainData_new_rows(build_sensor_context(instance=instance, resources={"kafka": kafka}))
        assert isinstance(skip, SkipReason) and "no messages" in skip.skip_message
        producer.send(topic, key=rows[0][0], value=rows[0][1], partition=1)
        producer.flush()
        producer.close()
        context = build_sensor_context(instance=instance, resources={"kafka": kafka})
        request = trainData_new_rows(context)
        assert isinstance(request, RunRequest)
        assert request.run_key == f"{topic}:0=2,1=2"
        assert request.run_config == {"ops": {"susy_model": {"config": {"end_offsets": {"0": 2, "1": 2}}}}}
        assert request.tags["mlassets/new_rows"] == "1"
        assert json.loads(context.cursor) == {"0": 2, "1": 2}
