"""The SUSY dataset asset: typed rows with a seeded, disjoint train/test split."""


import numpy as np
import pandas as pd
from dagster import Config, MetadataValue, Output, asset
from pydantic import Field

from mlassets.datasets.susy import FEATURES, find_susy, read_susy
from mlassets.metadata import column_schema, content_version, markdown_table, table_metadata
from mlassets.resources import DatasetsResource


class SusyDatasetConfig(Config):
    """How much of SUSY to read and how to split it."""

    max_rows: int | None = Field(default=None, description="Read only the first rows (None: all).")
    test_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of rows held out for testing.")
    seed: int = Field(default=20140101, description="Seed of the split permutation.")


def split_rows(n: int, test_fraction: float, seed: int) -> np.ndarray:
    """'train'/'test' for each of n rows: a seeded permutation, exactly round(n*test_fraction) test rows."""
    order = np.random.default_rng(seed).permutation(n)
    split = np.full(n, "train", dtype=object)
    split[order[: int(round(n * test_fraction))]] = "test"
    return split


@asset(code_version="1")
def susy_dataset(config: SusyDatasetConfig, datasets: DatasetsResource) -> Output[pd.DataFrame]:
    """SUSY rows: row_id, split (train/test, disjoint), label (1 = signal) and the 18 float32 features."""
    path = find_susy(datasets.path())
    frame = read_susy(path, nrows=config.max_rows)
    frame.insert(0, "row_id", np.arange(len(frame), dtype=np.int64))
    frame.insert(1, "split", split_rows(len(frame), config.test_fraction, config.seed))
    summary = frame.groupby("split")["label"].agg(rows="size", signal_share="mean").reset_index()
    return Output(frame, data_version=content_version(frame), metadata={
        **table_metadata(frame[["row_id", "split", "label", *FEATURES[:4]]]),
        "dagster/column_schema": column_schema(frame),
        "source": str(path),
        "splits": MetadataValue.md(markdown_table(summary)),
    })
