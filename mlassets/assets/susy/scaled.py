"""The SUSY test split replicated into large chunks (the original scaled it 15x) for distributed scoring."""

import time
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from dagster import AssetExecutionContext, BackfillPolicy, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from mlassets.automation import FOLLOWS_INPUTS, TRANSIENT_RETRY
from mlassets.datasets.susy import FEATURES
from mlassets.metadata import column_schema, markdown_table
from mlassets.partitions import SUSY_CHUNKS
from mlassets.resources import LakeResource

ASSET_NAME = "susy_test_scaled"
PART_FILE = "part-00000.parquet"


class SusyTestScaledConfig(Config):
    """How many rows each chunk holds and how they are written."""

    rows_per_chunk: int = Field(default=20_000, ge=1, description="Rows of each chunk (the original: ~1 M per chunk).")
    seed: int = Field(default=15, description="Base seed; chunk i shuffles its copies with seed + i.")
    row_group_rows: int = Field(default=1_000_000, ge=1_000,
                                description="Rows per parquet row group (also the rows held in memory at once).")


def chunk_row_ids(n_test: int, rows: int, seed: int, block: int) -> Iterator[np.ndarray]:
    """Test-row indices of one chunk in blocks of at most `block`: seeded permutations of the test split, back to back."""
    rng = np.random.default_rng(seed)
    buffer = np.empty(0, dtype=np.int64)
    remaining = rows
    while remaining > 0:
        take = min(block, remaining)
        parts, held = [buffer], len(buffer)
        while held < take:
            parts.append(rng.permutation(n_test))
            held += n_test
        buffer = np.concatenate(parts)
        yield buffer[:take]
        buffer, remaining = buffer[take:], remaining - take


def chunk_frame(test: pd.DataFrame, ids: np.ndarray, chunk: str) -> pd.DataFrame:
    """The rows of one block: chunk, source row_id, label and the 18 features."""
    frame = test.iloc[ids][["row_id", "label", *FEATURES]].reset_index(drop=True)
    frame.insert(0, "chunk", chunk)
    return frame.rename(columns={"row_id": "source_row_id"})


def write_chunk(lake: LakeResource, test: pd.DataFrame, chunk: str, rows: int, seed: int, block: int) -> str:
    """Write one chunk as a single parquet file with row groups of `block` rows; returns its directory uri."""
    lake.ensure_bucket()
    lake.delete(ASSET_NAME, chunk)
    fs = lake.filesystem()
    directory = lake.uri(ASSET_NAME, chunk)
    fs_dir = directory[len("s3://"):] if lake.is_s3 else directory
    fs.create_dir(fs_dir, recursive=True)
    writer = None
    try:
        for ids in chunk_row_ids(len(test), rows, seed, block):
            table = pa.Table.from_pandas(chunk_frame(test, ids, chunk), preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(f"{fs_dir}/{PART_FILE}", table.schema, filesystem=fs)
            writer.write_table(table, row_group_size=block)
    finally:
        if writer is not None:
            writer.close()
    return directory


@asset(partitions_def=SUSY_CHUNKS, backfill_policy=BackfillPolicy.single_run(), automation_condition=FOLLOWS_INPUTS,
       retry_policy=TRANSIENT_RETRY)
def susy_test_scaled(context: AssetExecutionContext, config: SusyTestScaledConfig, lake: LakeResource,
                     susy_dataset: pd.DataFrame) -> MaterializeResult:
    """Chunks of the held-out SUSY rows (chunk, source_row_id, label, 18 features), each a seeded replica of the test split."""
    test = susy_dataset[susy_dataset["split"] == "test"].reset_index(drop=True)
    if test.empty:
        raise ValueError("susy_dataset has no test rows to replicate")
    all_keys = SUSY_CHUNKS.get_partition_keys()
    written = []
    start = time.perf_counter()
    for chunk in context.partition_keys:
        seed = config.seed + all_keys.index(chunk)
        uri = write_chunk(lake, test, chunk, config.rows_per_chunk, seed, config.row_group_rows)
        written.append({"chunk": chunk, "rows": config.rows_per_chunk, "seed": seed, "path": uri})
        context.log.info(f"{chunk}: {config.rows_per_chunk} rows (seed {seed}) at {uri}")
    seconds = time.perf_counter() - start
    total = config.rows_per_chunk * len(written)
    return MaterializeResult(metadata={
        "dagster/row_count": config.rows_per_chunk,
        "dagster/column_schema": column_schema(chunk_frame(test, np.arange(1), "chunk-00")),
        "rows_written": total,
        "replication_factor": round(config.rows_per_chunk / len(test), 2),
        "test_rows": len(test),
        "chunks": MetadataValue.md(markdown_table(pd.DataFrame(written))),
        "rows_per_s": round(total / max(seconds, 1e-9), 1),
    })
