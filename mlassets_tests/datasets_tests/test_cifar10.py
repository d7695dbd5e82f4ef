"""CIFAR-10 binary reader on the real test batch and on corrupted copies."""

from pathlib import Path

import numpy as np
import pytest

from mlassets.datasets.cifar10 import LABELS, RECORD_BYTES, read_batch, read_cifar10, read_label_names
from mlassets.datasets.errors import DatasetFormatError


def test_real_test_batch(data_dir: Path) -> None:
    data = read_cifar10(data_dir / "cifar10")
    assert data.images.shape == (10_000, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert np.bincount(data.labels).tolist() == [1000] * 10
    assert data.label_names[0] == "cat"
    # the first record's red plane is the first 1,024 pixel bytes of the file
    raw = np.fromfile(data_dir / "cifar10/cifar-10-batches-bin/test_batch.bin", dtype=np.uint8, count=RECORD_BYTES)
    assert np.array_equal(data.images[0, :, :, 0].ravel(), raw[1:1025])
    assert np.array_equal(data.images[0, :, :, 2].ravel(), raw[2049:3073])


def test_label_names(data_dir: Path) -> None:
    assert read_label_names(data_dir / "cifar10/cifar-10-batches-bin/batches.meta.txt") == LABELS


def _copy_records(data_dir: Path, tmp_path: Path, n: int) -> bytearray:
    src = data_dir / "cifar10/cifar-10-batches-bin/test_batch.bin"
    with open(src, "rb") as f:
        return bytearray(f.read(n * RECORD_BYTES))


def test_truncated_file_names_the_record(data_dir: Path, tmp_path: Path) -> None:
    blob = _copy_records(data_dir, tmp_path, 3)
    path = tmp_path / "test_batch.bin"
    path.write_bytes(blob[:-100])
    with pytest.raises(DatasetFormatError, match=r"test_batch.bin, record 2: .*truncated") as err:
        read_batch(path)
    assert err.value.record == 2


def test_out_of_range_label(data_dir: Path, tmp_path: Path) -> None:
    blob = _copy_records(data_dir, tmp_path, 3)
    blob[RECORD_BYTES] = 12
    path = tmp_path / "test_batch.bin"
    path.write_bytes(bytes(blob))
    with pytest.raises(DatasetFormatError, match=r"record 1: label byte 12 is outside 0..9"):
        read_batch(path)


def test_wrong_class_names(tmp_path: Path) -> None:
    (tmp_path / "batches.meta.txt").write_text("cat\ndog\n")
    with pytest.raises(DatasetFormatError, match="canonical"):
        read_label_names(tmp_path / "batches.meta.txt")


def test_missing_batches(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no CIFAR-10 binary batches"):
        read_cifar10(tmp_path)
