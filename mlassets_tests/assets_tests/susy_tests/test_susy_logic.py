"""Pure logic of the SUSY assets: chunk rows of the test split and the offset ranges a retrain reads."""

import numpy as np
import pytest

from mlassets.assets.susy.model import read_ranges
from mlassets.assets.susy.scaled import chunk_row_ids
from mlassets.assets.susy.train_topic import offset_ranges_frame


@pytest.mark.parametrize(("n_test", "rows", "block"), [(10, 35, 8), (7, 7, 100), (5, 3, 2)])
def test_chunk_rows_are_whole_copies_of_the_test_split(n_test, rows, block) -> None:
    blocks = list(chunk_row_ids(n_test, rows, seed=1, block=block))
    ids = np.concatenate(blocks)
    assert len(ids) == rows and max(len(b) for b in blocks) <= block
    counts = np.bincount(ids, minlength=n_test)
    assert counts.max() - counts.min() <= 1
    assert (np.concatenate(list(chunk_row_ids(n_test, rows, 1, block))) == ids).all()


def test_read_ranges_moves_only_the_ends() -> None:
    recorded = offset_ranges_frame("trainData", {0: (10, 20), 1: (5, 9)})
    assert read_ranges(recorded, None) == ("trainData", {0: (10, 20), 1: (5, 9)})
    assert read_ranges(recorded, {"0": 30, "2": 4}) == ("trainData", {0: (10, 30), 1: (5, 9), 2: (0, 4)})
    with pytest.raises(ValueError, match="before its recorded start"):
        read_ranges(recorded, {"0": 3})
