"""Spark scoring of SUSY chunks, one summary row per chunk of each task: mapInPandas over Spark's Arrow batches, or
tasks that read their Parquet row groups from the lake with pyarrow."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mlassets.datasets.susy import FEATURES
from mlassets.models.susy_metrics import Confusion, confusion
from mlassets.models.susy_scorer import cached_scorer, model_loads

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow.fs as pafs

SCORE_SCHEMA = ("chunk string, rows long, tp long, fp long, tn long, fn long, positive_hist array<long>, "
                "negative_hist array<long>, batches int, worker_pid int, model_loads int, engine string, "
                "seconds double")
SCORE_COLUMNS = [field.split(" ")[0] for field in SCORE_SCHEMA.split(", ")]
SCORED_COLUMNS = ["label", *FEATURES]


@dataclass(frozen=True)
class RowGroup:
    """One Parquet row group of a chunk: the unit of work a task reads and scores."""

    chunk: str
    path: str
    index: int
    rows: int


class ChunkTotals:
    """Confusion counts and batch counts per chunk, summed over the batches one task scored."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        self.start = time.perf_counter()
        self.totals: dict[str, Confusion] = {}
        self.batches: dict[str, int] = {}
        self.engine = ""

    def add(self, chunk: str, labels: np.ndarray, scores: np.ndarray) -> None:
        """Count one scored batch of a chunk."""
        counts = confusion(labels, scores, self.bins)
        self.totals[chunk] = self.totals[chunk] + counts if chunk in self.totals else counts
        self.batches[chunk] = self.batches.get(chunk, 0) + 1

    def rows(self) -> list[dict[str, Any]]:
        """One summary row per chunk in SCORE_SCHEMA's columns; the task's seconds on the first."""
        rows = [{"chunk": chunk, "rows": c.rows, "tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn,
                 "positive_hist": c.positive_hist, "negative_hist": c.negative_hist, "batches": self.batches[chunk],
                 "worker_pid": os.getpid(), "model_loads": model_loads(), "engine": self.engine, "seconds": 0.0}
                for chunk, c in self.totals.items()]
        if rows:
            rows[0]["seconds"] = time.perf_counter() - self.start
        return rows


def score_frames(frames: Iterator["pd.DataFrame"], model_id: str, broadcast: Any, threads: int,
                 bins: int) -> Iterator["pd.DataFrame"]:
    """mapInPandas body: score each Arrow batch with the process's cached model; one summary row per chunk of the
    Spark partition, so what the driver collects does not grow with the rows."""
    import pandas as pd

    columns = list(FEATURES)
    totals = ChunkTotals(bins)
    for frame in frames:
        scorer = cached_scorer(model_id, lambda: broadcast.value, threads)
        totals.engine = scorer.engine
        scores = scorer.predict(frame[columns].to_numpy(dtype=np.float32))
        labels = frame["label"].to_numpy()
        chunks = frame["chunk"].to_numpy()
        for chunk in pd.unique(chunks):
            mask = chunks == chunk
            totals.add(str(chunk), labels[mask], scores[mask])
    rows = totals.rows()
    if rows:
        yield pd.DataFrame(rows)


def score_row_groups(groups: Iterable[RowGroup], model_id: str, broadcast: Any, filesystem: "pafs.FileSystem",
                     threads: int, bins: int, batch_rows: int) -> Iterator[dict[str, Any]]:
    """mapPartitions body: read each row group's label and features from the lake with pyarrow (no JVM row
    conversion), score them in batches of `batch_rows`; one summary row per chunk of the task."""
    import pyarrow.parquet as pq

    totals = ChunkTotals(bins)
    for group in groups:
        scorer = cached_scorer(model_id, lambda: broadcast.value, threads)
        totals.engine = scorer.engine
        with filesystem.open_input_file(group.path) as source:
            for batch in pq.ParquetFile(source).iter_batches(batch_size=batch_rows, row_groups=[group.index],
                                                             columns=SCORED_COLUMNS, use_threads=False):
                features = np.column_stack([batch.column(name).to_numpy() for name in FEATURES])
                totals.add(group.chunk, batch.column("label").to_numpy(), scorer.predict(features))
    yield from totals.rows()


def row_groups(filesystem: "pafs.FileSystem", files: dict[str, list[str]]) -> list[RowGroup]:
    """Every row group with rows of each chunk's Parquet files (read from their footers), the largest first so the
    tasks that take longest start first; a file without the label or a feature is a ValueError naming it."""
    import pyarrow.parquet as pq

    groups = []
    for chunk, paths in files.items():
        for path in paths:
            with filesystem.open_input_file(path) as source:
                metadata = pq.ParquetFile(source).metadata
            missing = [c for c in SCORED_COLUMNS if c not in metadata.schema.names]
            if missing:
                raise ValueError(f"{path} (chunk {chunk}) has no column(s) {', '.join(missing)}: not a SUSY chunk")
            groups += [RowGroup(chunk, path, i, metadata.row_group(i).num_rows) for i in range(metadata.num_row_groups)
                       if metadata.row_group(i).num_rows > 0]
    return sorted(groups, key=lambda g: -g.rows)
