"""The SUSY training rows produced to the Kafka topic `trainData` in the original wire format."""

import os
from collections.abc import Iterator

import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, Config, MetadataValue, Output, asset
from pydantic import Field

from mlassets.automation import TRANSIENT_RETRY
from mlassets.datasets.susy import FEATURES
from mlassets.metadata import markdown_table, table_metadata
from mlassets.names import TRAIN_TOPIC
from mlassets.resources import KafkaResource
from mlassets.streaming.susy_messages import ensure_topic, produce_train_rows


ROWS_PER_PROCESS = 100_000
"""Below this many rows per process, starting one (about 0.5 s of CPU) costs more than its share of the sends."""


class SusyTrainTopicConfig(Config):
    """Where and how the training rows are produced."""

    topic: str = Field(default=TRAIN_TOPIC, description="Kafka topic of the training rows.")
    partitions: int = Field(default=4, ge=1, description="Partitions of the topic when it has to be created.")
    max_rows: int | None = Field(default=None, ge=1, description="Produce only the first training rows (None: all).")
    producer_processes: int | None = Field(
        default=None, ge=1,
        description=f"Producer processes, each owning whole partitions (None: one per {ROWS_PER_PROCESS:,} rows, at "
                    "most one per CPU and one per partition; 1: in this process).")


def offset_ranges_frame(topic: str, ranges: dict[int, tuple[int, int]]) -> pd.DataFrame:
    """One row per partition: topic, partition, start_offset and end_offset (exclusive), rows."""
    frame = pd.DataFrame(
        [(topic, p, low, high) for p, (low, high) in sorted(ranges.items())],
        columns=["topic", "partition", "start_offset", "end_offset"],
    ).astype({"partition": "int32", "start_offset": "int64", "end_offset": "int64"})
    frame["rows"] = frame["end_offset"] - frame["start_offset"]
    return frame


@asset(retry_policy=TRANSIENT_RETRY,
       check_specs=[AssetCheckSpec("all_rows_produced", asset="susy_train_topic",
                                   description="the offset ranges hold exactly the training rows sent")])
def susy_train_topic(config: SusyTrainTopicConfig, kafka: KafkaResource,
                     susy_dataset: pd.DataFrame) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
    """The offset range (topic, partition, start, end exclusive, rows) of each partition the training rows went to."""
    train = susy_dataset[susy_dataset["split"] == "train"]
    if config.max_rows is not None:
        train = train.head(config.max_rows)
    partitions = ensure_topic(kafka, config.topic, config.partitions)
    processes = config.producer_processes or min(partitions, os.cpu_count() or 1, -(-len(train) // ROWS_PER_PROCESS))
    result = produce_train_rows(kafka, config.topic, train["label"].to_numpy(),
                                train[list(FEATURES)].to_numpy(), partitions, processes=processes)
    frame = offset_ranges_frame(config.topic, result.ranges)
    rows_per_s = result.rows / max(result.seconds, 1e-9)
    yield Output(frame, metadata={
        **table_metadata(frame),
        "topic": config.topic,
        "rows": result.rows,
        "rows_per_s": round(rows_per_s, 1),
        "producer_processes": result.processes,
        "producer_client": result.client,
        "seconds": round(result.seconds, 3),
        "offset_ranges": MetadataValue.md(markdown_table(frame)),
    })
    yield AssetCheckResult(check_name="all_rows_produced", passed=result.rows == len(train),
                           metadata={"sent": len(train), "in_ranges": result.rows})
