"""The CIFAR-10 images asset: every binary batch as rows of raw 32x32 RGB bytes with labels."""


from collections.abc import Iterator

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, Config, MetadataValue, Output, asset
from pydantic import Field

from mlassets.datasets.cifar10 import LABELS, read_cifar10
from mlassets.metadata import content_version, markdown_table, table_metadata
from mlassets.resources import DatasetsResource

COLUMNS = {
    "image_id": "batch file and record index, unique across batches",
    "source": "batch file the record came from",
    "label": "class index 0..9",
    "label_name": "canonical class name (airplane ... truck)",
    "image": "32x32x3 uint8 RGB, row-major (HWC), 3,072 bytes",
}


class CifarImagesConfig(Config):
    """Which CIFAR-10 batches to read."""

    batches: list[str] | None = Field(
        default=None, description="Batch file names (e.g. ['test_batch.bin']); default: every batch found."
    )


@asset(
    check_specs=[AssetCheckSpec("labels_balanced", asset="cifar10_images",
                                description="every class holds at least 5% of the images")],
)
def cifar10_images(config: CifarImagesConfig, datasets: DatasetsResource) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
    """CIFAR-10 images (32x32 RGB bytes) with their class, one row per record of the binary batches."""
    data = read_cifar10(datasets.path("cifar10"), config.batches)
    offsets = np.concatenate([np.arange((data.sources == s).sum()) for s in dict.fromkeys(data.sources)])
    frame = pd.DataFrame({
        "image_id": [f"{s}:{i}" for s, i in zip(data.sources, offsets)],
        "source": data.sources.astype(str),
        "label": data.labels.astype(np.int8),
        "label_name": data.label_names.astype(str),
        "image": [img.tobytes() for img in data.images],
    })
    counts = frame["label_name"].value_counts().reindex(LABELS, fill_value=0)
    per_class = counts.rename("images").rename_axis("class").reset_index()
    yield Output(frame, data_version=content_version(frame), metadata={
        **table_metadata(frame, COLUMNS),
        "images_per_class": MetadataValue.md(markdown_table(per_class)),
        "batches": ", ".join(dict.fromkeys(frame["source"])),
    })
    smallest = float(counts.min() / max(len(frame), 1))
    yield AssetCheckResult(check_name="labels_balanced", passed=smallest >= 0.05,
                           metadata={"smallest_class_share": smallest})
