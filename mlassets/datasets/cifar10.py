"""CIFAR-10 binary batches: 3,073-byte records of one label byte and 32x32 RGB planes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mlassets.datasets.errors import DatasetFormatError

if TYPE_CHECKING:
    import pandas as pd

LABELS: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
RECORD_BYTES = 1 + 32 * 32 * 3
BATCH_DIR = "cifar-10-batches-bin"
TRAIN_BATCHES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_BATCH = "test_batch.bin"


@dataclass(frozen=True)
class CifarImages:
    """Images (N, 32, 32, 3) uint8 RGB, labels (N,) int64 in 0..9, and the batch file of each image."""

    images: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def label_names(self) -> np.ndarray:
        return np.asarray(LABELS, dtype=object)[self.labels]


def read_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one binary batch into (images uint8 N x 32 x 32 x 3 RGB, labels int64)."""
    path = Path(path)
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        raise DatasetFormatError(path, "file is empty")
    if raw.size % RECORD_BYTES:
        complete = raw.size // RECORD_BYTES
        raise DatasetFormatError(
            path, f"size {raw.size} is not a multiple of the {RECORD_BYTES}-byte record: "
                  f"record {complete} is truncated ({raw.size - complete * RECORD_BYTES} bytes)",
            record=complete,
        )
    records = raw.reshape(-1, RECORD_BYTES)
    labels = records[:, 0].astype(np.int64)
    bad = np.flatnonzero(labels >= len(LABELS))
    if bad.size:
        raise DatasetFormatError(path, f"label byte {labels[bad[0]]} is outside 0..9", record=int(bad[0]))
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def read_label_names(path: str | Path) -> tuple[str, ...]:
    """Read batches.meta.txt and check it names the canonical classes in label order."""
    names = tuple(line.strip() for line in Path(path).read_text().splitlines() if line.strip())
    if names != LABELS:
        raise DatasetFormatError(path, f"class names {names} differ from the canonical {LABELS}")
    return names


def find_batches(root: str | Path, names: Sequence[str] | None = None) -> list[Path]:
    """The batch files under root (or root/cifar-10-batches-bin), train batches first."""
    root = Path(root)
    base = root / BATCH_DIR if (root / BATCH_DIR).is_dir() else root
    wanted = list(names) if names else [*TRAIN_BATCHES, TEST_BATCH]
    found = [base / name for name in wanted if (base / name).is_file()]
    if names and len(found) != len(wanted):
        missing = sorted(set(wanted) - {p.name for p in found})
        raise FileNotFoundError(f"CIFAR-10 batches missing under {base}: {', '.join(missing)}")
    if not found:
        raise FileNotFoundError(f"no CIFAR-10 binary batches ({TEST_BATCH}, data_batch_*.bin) under {base}")
    meta = base / "batches.meta.txt"
    if meta.is_file():
        read_label_names(meta)
    return found


def read_cifar10(root: str | Path, names: Sequence[str] | None = None) -> CifarImages:
    """Read every binary batch found under root into one CifarImages."""
    parts = [(path.name, *read_batch(path)) for path in find_batches(root, names)]
    return CifarImages(
        images=np.concatenate([p[1] for p in parts]),
        labels=np.concatenate([p[2] for p in parts]),
        sources=np.concatenate([np.full(len(p[2]), p[0], dtype=object) for p in parts]),
    )


def images_array(frame: pd.DataFrame) -> np.ndarray:
    """The image bytes column of a CIFAR-10 frame as an (N, 32, 32, 3) uint8 array."""
    return np.frombuffer(b"".join(frame["image"]), dtype=np.uint8).reshape(-1, 32, 32, 3)
