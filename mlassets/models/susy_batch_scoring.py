"""Spark's mapInPandas scoring of SUSY chunks: one summary row per chunk, in the schema the driver reads."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from mlassets.models.susy_metrics import Confusion, confusion
from mlassets.models.susy_scorer import cached_scorer, model_loads

if TYPE_CHECKING:
    import pandas as pd

SCORE_SCHEMA = ("chunk string, rows long, tp long, fp long, tn long, fn long, positive_hist array<long>, "
                "negative_hist array<long>, batches int, worker_pid int, model_loads int, engine string, "
                "seconds double")


def score_frames(frames: Iterator["pd.DataFrame"], model_id: str, broadcast: Any, threads: int,
                 bins: int) -> Iterator["pd.DataFrame"]:
    """mapInPandas body: score each Arrow batch with the process's cached model; one summary row per chunk of the
    Spark partition (its seconds on the first), so what the driver collects does not grow with the rows."""
    import os
    import time

    import pandas as pd

    from mlassets.datasets.susy import FEATURES

    columns = list(FEATURES)
    start = time.perf_counter()
    totals: dict[str, Confusion] = {}
    batches: dict[str, int] = {}
    for frame in frames:
        scorer = cached_scorer(model_id, lambda: broadcast.value, threads)
        scores = scorer.predict(frame[columns].to_numpy(dtype=np.float32))
        labels = frame["label"].to_numpy()
        chunks = frame["chunk"].to_numpy()
        for chunk in pd.unique(chunks):
            mask = chunks == chunk
            counts = confusion(labels[mask], scores[mask], bins)
            key = str(chunk)
            totals[key] = totals[key] + counts if key in totals else counts
            batches[key] = batches.get(key, 0) + 1
    rows = [{"chunk": chunk, "rows": c.rows, "tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn,
             "positive_hist": c.positive_hist, "negative_hist": c.negative_hist, "batches": batches[chunk],
             "worker_pid": os.getpid(), "model_loads": model_loads(), "engine": scorer.engine, "seconds": 0.0}
            for chunk, c in totals.items()]
    if rows:
        rows[0]["seconds"] = time.perf_counter() - start
        yield pd.DataFrame(rows)
