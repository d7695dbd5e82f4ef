"""The SUSY MLP of the original pipeline, with the standard scaling applied before it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import keras
    import pandas as pd

N_FEATURES = 18


def build_susy_mlp(n_features: int = N_FEATURES) -> "keras.Model":
    """Dense 128 relu, Dropout 0.2, Dense 256, Dropout 0.4, Dense 128, Dropout 0.4, Dense 1 sigmoid (68,481 weights)."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input(shape=(n_features,), name="features"),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(256, activation="relu"),
        layers.Dropout(0.4),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.4),
        layers.Dense(1, activation="sigmoid", name="signal_probability"),
    ], name="susy_mlp")


@dataclass(frozen=True)
class StandardScaler:
    """Per-feature mean and scale fitted on the training rows."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, features: np.ndarray) -> "StandardScaler":
        """Fit on an (N, F) array; constant features get scale 1."""
        features = np.asarray(features, dtype=np.float64)
        scale = features.std(axis=0)
        return cls(features.mean(axis=0).astype(np.float32),
                   np.where(scale > 0, scale, 1.0).astype(np.float32))

    def transform(self, features: np.ndarray) -> np.ndarray:
        """(features - mean) / scale as float32."""
        return ((np.asarray(features, dtype=np.float32) - self.mean) / self.scale).astype(np.float32, copy=False)

    def extras(self) -> dict[str, np.ndarray]:
        """The arrays saved next to the model's weights."""
        return {"scaler_mean": self.mean, "scaler_scale": self.scale}

    @classmethod
    def from_extras(cls, extras: dict[str, np.ndarray]) -> "StandardScaler":
        """The scaler saved with a model; a ValueError names what is missing."""
        missing = [k for k in ("scaler_mean", "scaler_scale") if k not in extras]
        if missing:
            raise ValueError(f"the stored model has no scaler ({', '.join(missing)} missing)")
        return cls(extras["scaler_mean"].astype(np.float32), extras["scaler_scale"].astype(np.float32))


class SusyScorer:
    """A loaded SUSY model and its scaler: signal probabilities for raw feature arrays."""

    def __init__(self, model: "keras.Model", scaler: StandardScaler) -> None:
        self.model = model
        self.scaler = scaler

    @classmethod
    def from_bytes(cls, architecture_json: str, blob: bytes) -> "SusyScorer":
        """Rebuild from the model store's architecture JSON and weights blob (strict, no pickle)."""
        from mlassets.models.serialization import model_from_bytes

        model, extras = model_from_bytes(architecture_json, blob)
        return cls(model, StandardScaler.from_extras(extras))

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Signal probability of each row of an (N, 18) raw feature array."""
        if len(features) == 0:
            return np.empty(0, dtype=np.float32)
        scores = self.model.predict_on_batch(self.scaler.transform(features))
        return np.asarray(scores, dtype=np.float32).reshape(-1)


# One scorer per Python process, keyed by model id: Spark reuses its Python workers, so each loads the model once.
_SCORERS: dict[str, SusyScorer] = {}
_LOADS = {"count": 0}


def cached_scorer(model_id: str, payload: Callable[[], tuple[str, bytes, str]], threads: int = 0) -> SusyScorer:
    """The process's scorer for model_id; on first use payload() gives (architecture, blob, sha256), checked."""
    scorer = _SCORERS.get(model_id)
    if scorer is None:
        from mlassets.models.serialization import sha256_hex

        architecture, blob, digest = payload()
        if sha256_hex(blob) != digest:
            raise ValueError(f"model {model_id}: weights sha256 does not match {digest} (tampered in transit)")
        if threads > 0:
            _limit_threads(threads)
        scorer = SusyScorer.from_bytes(architecture, blob)
        _SCORERS.clear()
        _SCORERS[model_id] = scorer
        _LOADS["count"] += 1
    return scorer


def model_loads() -> int:
    """How many times this process has built a scorer."""
    return _LOADS["count"]


def _limit_threads(threads: int) -> None:
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # the runtime is already initialised in this process; keep its settings


@dataclass(frozen=True)
class Confusion:
    """Counts of one scored set at threshold 0.5 plus score histograms per true class (for a pooled AUC)."""

    tp: int
    fp: int
    tn: int
    fn: int
    positive_hist: np.ndarray
    negative_hist: np.ndarray

    @property
    def rows(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


def confusion(labels: np.ndarray, scores: np.ndarray, bins: int) -> Confusion:
    """Confusion counts at 0.5 and `bins`-bin histograms of the scores of positives and negatives."""
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(scores) >= 0.5
    index = np.minimum((np.asarray(scores) * bins).astype(np.int64), bins - 1).clip(0)
    return Confusion(
        tp=int((predicted & labels).sum()), fp=int((predicted & ~labels).sum()),
        tn=int((~predicted & ~labels).sum()), fn=int((~predicted & labels).sum()),
        positive_hist=np.bincount(index[labels], minlength=bins),
        negative_hist=np.bincount(index[~labels], minlength=bins),
    )


def histogram_auc(positive_hist: np.ndarray, negative_hist: np.ndarray) -> float:
    """ROC AUC from score histograms: P(score_pos > score_neg), pairs within one bin counted as half."""
    positives, negatives = float(np.sum(positive_hist)), float(np.sum(negative_hist))
    if positives == 0 or negatives == 0:
        return float("nan")
    negatives_below = np.cumsum(negative_hist) - negative_hist
    wins = np.sum(positive_hist * negatives_below) + 0.5 * np.sum(positive_hist * negative_hist)
    return float(wins / (positives * negatives))


SCORE_SCHEMA = ("chunk string, rows long, tp long, fp long, tn long, fn long, positive_hist array<long>, "
                "negative_hist array<long>, worker_pid int, model_loads int, seconds double")


def score_frames(frames: Iterator["pd.DataFrame"], model_id: str, broadcast: Any, threads: int,
                 bins: int) -> Iterator["pd.DataFrame"]:
    """mapInPandas body: score each Arrow batch with the process's cached model, one summary row per chunk in it."""
    import os
    import time

    import pandas as pd

    from mlassets.datasets.susy import FEATURES

    columns = list(FEATURES)
    for frame in frames:
        start = time.perf_counter()
        scorer = cached_scorer(model_id, lambda: broadcast.value, threads)
        scores = scorer.predict(frame[columns].to_numpy(dtype=np.float32))
        labels = frame["label"].to_numpy()
        chunks = frame["chunk"].to_numpy()
        rows = []
        for chunk in pd.unique(chunks):
            mask = chunks == chunk
            counts = confusion(labels[mask], scores[mask], bins)
            rows.append({"chunk": str(chunk), "rows": counts.rows, "tp": counts.tp, "fp": counts.fp,
                         "tn": counts.tn, "fn": counts.fn, "positive_hist": counts.positive_hist,
                         "negative_hist": counts.negative_hist, "worker_pid": os.getpid(),
                         "model_loads": model_loads(), "seconds": 0.0})
        if rows:
            rows[0]["seconds"] = time.perf_counter() - start
            yield pd.DataFrame(rows)
