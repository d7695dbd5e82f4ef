"""The SUSY scorers, their per-process cache and the mapInPandas chunk summaries, against Keras and scikit-learn."""

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlassets.datasets.susy import FEATURES
from mlassets.models import susy_scorer
from mlassets.models.serialization import model_sha256, model_to_bytes
from mlassets.models.susy_batch_scoring import row_groups, score_frames, score_row_groups
from mlassets.models.susy_metrics import confusion, histogram_auc
from mlassets.models.susy_mlp import build_susy_mlp
from mlassets.models.susy_scorer import StandardScaler, SusyScorer


def test_histogram_auc_matches_the_exact_auc() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 5000)
    scores = np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1)
    counts = confusion(labels, scores, 4096)
    assert histogram_auc(counts.positive_hist, counts.negative_hist) == pytest.approx(roc_auc_score(labels, scores),
                                                                                      abs=1e-3)
    assert counts.rows == 5000 and counts.tp + counts.fn == labels.sum()


def test_scorer_loads_once_per_process_and_refuses_a_changed_blob_or_architecture(monkeypatch) -> None:
    monkeypatch.setattr(susy_scorer, "_SCORERS", {})
    monkeypatch.setattr(susy_scorer, "_LOADS", {"count": 0})
    rng = np.random.default_rng(1)
    features = rng.normal(size=(300, 18)).astype(np.float32)
    scaler = StandardScaler.fit(features)
    architecture, blob = model_to_bytes(build_susy_mlp(), scaler.extras())
    payload = SimpleNamespace(value=(architecture, blob, model_sha256(architecture, blob)))
    frames = [pd.DataFrame({"chunk": "chunk-00", "label": rng.integers(0, 2, 100), **dict(zip(FEATURES, part.T))})
              for part in np.split(features, 3)]
    out = pd.concat(score_frames(iter(frames), "susy_mlp:v9", payload, threads=0, bins=64))
    assert out["rows"].tolist() == [300] and out["batches"].tolist() == [3] and out["model_loads"].tolist() == [1]
    digest = model_sha256(architecture, blob)
    linear = architecture.replace('"sigmoid"', '"linear"')
    assert linear != architecture
    for number, changed in enumerate([(architecture, blob + b"x"), (linear, blob)], start=10):
        bad = SimpleNamespace(value=(*changed, digest))
        with pytest.raises(ValueError, match="tampered"):
            list(score_frames(iter(frames), f"susy_mlp:v{number}", bad, threads=0, bins=64))


def _trained_susy_bytes(rng: np.random.Generator) -> tuple:
    """A SUSY MLP fitted for one epoch on synthetic rows, its scaler, its store bytes and fresh rows to score."""
    import keras

    features = rng.normal(size=(4000, 18)).astype(np.float32) * 2 + 1
    scaler = StandardScaler.fit(features)
    keras.utils.set_random_seed(4)
    model = build_susy_mlp()
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(scaler.transform(features[:2000]), (features[:2000, 0] > 1).astype(np.float32), epochs=1, verbose=0)
    architecture, blob = model_to_bytes(model, scaler.extras())
    return model, scaler, architecture, blob, features[2000:]


def test_the_numpy_forward_pass_gives_the_keras_scores() -> None:
    model, scaler, architecture, blob, features = _trained_susy_bytes(np.random.default_rng(2))
    scorer = SusyScorer.numpy_from_bytes(architecture, blob)
    assert scorer is not None and scorer.engine == "numpy"
    for rows in (2000, 333, 1):  # two steps of DenseStack.step_rows and a remainder, one short step, one row
        keras_scores = model.predict(scaler.transform(features[:rows]), verbose=0).reshape(-1)
        np.testing.assert_allclose(scorer.predict(features[:rows]), keras_scores, rtol=0, atol=1e-5)
    extreme = features[:5] * 1e4  # far outside the training range: a saturated sigmoid
    keras_scores = model.predict(scaler.transform(extreme), verbose=0).reshape(-1)
    np.testing.assert_allclose(scorer.predict(extreme), keras_scores, rtol=0, atol=1e-5)


def test_other_architectures_are_scored_by_keras(monkeypatch) -> None:
    import keras

    monkeypatch.setattr(susy_scorer, "_SCORERS", {})
    monkeypatch.setattr(sys, "path", [*sys.path, "/nowhere/spark-package.jar"])
    features = np.random.default_rng(3).normal(size=(50, 18)).astype(np.float32)
    model = keras.Sequential([keras.Input(shape=(18,)), keras.layers.Dense(8, activation="tanh"),
                              keras.layers.BatchNormalization(), keras.layers.Dense(1, activation="sigmoid")])
    scaler = StandardScaler.fit(features)
    architecture, blob = model_to_bytes(model, scaler.extras())
    assert SusyScorer.numpy_from_bytes(architecture, blob) is None
    path = list(sys.path)
    scorer = susy_scorer.cached_scorer("other:v1", lambda: (architecture, blob, model_sha256(architecture, blob)))
    assert scorer.engine == "keras" and sys.path == path
    keras_scores = model.predict(scaler.transform(features), verbose=0).reshape(-1)
    np.testing.assert_allclose(scorer.predict(features), keras_scores, rtol=0, atol=1e-6)


def test_partition_summaries_add_up_the_batches_per_chunk(monkeypatch) -> None:
    monkeypatch.setattr(susy_scorer, "_SCORERS", {})
    rng = np.random.default_rng(5)
    _, _, architecture, blob, features = _trained_susy_bytes(rng)
    labels = rng.integers(0, 2, len(features))
    chunks = np.where(rng.random(len(features)) < 0.3, "chunk-01", "chunk-00")
    payload = SimpleNamespace(value=(architecture, blob, model_sha256(architecture, blob)))
    frame = pd.DataFrame({"chunk": chunks, "label": labels, **dict(zip(FEATURES, features.T))})
    batches = [frame.iloc[i:i + 300] for i in range(0, len(frame), 300)]
    out = pd.concat(score_frames(iter(batches), "susy_mlp:v11", payload, threads=0, bins=256)).set_index("chunk")
    scores = susy_scorer.cached_scorer("susy_mlp:v11", lambda: payload.value).predict(features)
    for chunk in ("chunk-00", "chunk-01"):
        mask = chunks == chunk
        expected = confusion(labels[mask], scores[mask], 256)
        row = out.loc[chunk]
        assert (row["tp"], row["fp"], row["tn"], row["fn"]) == (expected.tp, expected.fp, expected.tn, expected.fn)
        np.testing.assert_array_equal(row["positive_hist"], expected.positive_hist)
        np.testing.assert_array_equal(row["negative_hist"], expected.negative_hist)
        assert row["batches"] == 7
    assert out["seconds"].gt(0).sum() == 1


def test_row_group_tasks_score_what_the_arrow_batches_score(monkeypatch, tmp_path) -> None:
    """Each chunk written as Parquet files of several row groups (one file of it empty): the row groups are listed
    from the footers, largest first, and the tasks' summaries add up to score_frames' on the same rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlassets.resources import LakeResource

    monkeypatch.setattr(susy_scorer, "_SCORERS", {})
    rng = np.random.default_rng(6)
    _, _, architecture, blob, features = _trained_susy_bytes(rng)
    payload = SimpleNamespace(value=(architecture, blob, model_sha256(architecture, blob)))
    lake = LakeResource(root=str(tmp_path))
    frames = {}
    for chunk, (low, high) in {"chunk-00": (0, 1300), "chunk-01": (1300, 2000)}.items():
        frame = pd.DataFrame({"chunk": chunk, "source_row_id": np.arange(low, high),
                              "label": rng.integers(0, 2, high - low).astype(np.int8),
                              **dict(zip(FEATURES, features[low:high].T))})
        frames[chunk] = frame
        (tmp_path / "scaled" / chunk).mkdir(parents=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table.slice(0, 900), tmp_path / "scaled" / chunk / "part-00000.parquet", row_group_size=400)
        pq.write_table(table.slice(900), tmp_path / "scaled" / chunk / "part-00001.parquet", row_group_size=400)
        pq.write_table(table.slice(0, 0), tmp_path / "scaled" / chunk / "part-00002.parquet")
        (tmp_path / "scaled" / chunk / "_SUCCESS").write_bytes(b"")
    filesystem = lake.filesystem()
    files = {chunk: lake.parquet_files("scaled", chunk) for chunk in frames}
    assert [Path(p).name for p in files["chunk-00"]] == ["part-00000.parquet", "part-00001.parquet",
                                                          "part-00002.parquet"]
    groups = row_groups(filesystem, files)
    assert [g.rows for g in groups if g.chunk == "chunk-00"] == [400, 400, 400, 100]
    assert sum(g.rows for g in groups) == 2000 and [g.rows for g in groups] == sorted((g.rows for g in groups),
                                                                                      reverse=True)

    tasks = [groups[0::2], groups[1::2]]  # two tasks, as Spark would hand them out
    rows = [row for task in tasks for row in score_row_groups(task, "susy_mlp:v12", payload, filesystem, threads=0,
                                                              bins=256, batch_rows=150)]
    by_arrow = pd.DataFrame(rows).groupby("chunk")[["rows", "tp", "fp", "tn", "fn"]].sum()
    by_frames = pd.concat(score_frames(iter(frames.values()), "susy_mlp:v12", payload, threads=0, bins=256))
    assert by_arrow.equals(by_frames.set_index("chunk")[["rows", "tp", "fp", "tn", "fn"]])
    assert by_arrow["rows"].tolist() == [1300, 700]
    hist = pd.DataFrame(rows).groupby("chunk")["positive_hist"].apply(lambda h: np.sum(np.stack(h.to_list()), axis=0))
    np.testing.assert_array_equal(hist["chunk-01"], by_frames.set_index("chunk").loc["chunk-01", "positive_hist"])
    assert sum(r["batches"] for r in rows) == sum(-(-g.rows // 150) for g in groups)
    with pytest.raises(FileNotFoundError, match="no parquet directory"):
        lake.parquet_files("scaled", "chunk-09")
    pq.write_table(pa.Table.from_pandas(frames["chunk-01"].drop(columns=[FEATURES[3]])),
                   tmp_path / "scaled" / "chunk-01" / "part-00003.parquet")
    message = f"part-00003.parquet (chunk chunk-01) has no column(s) {FEATURES[3]}"
    with pytest.raises(ValueError, match=re.escape(message)):
        row_groups(filesystem, {"chunk-01": lake.parquet_files("scaled", "chunk-01")})
