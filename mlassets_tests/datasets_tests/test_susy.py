"""SUSY reader on the real sample and on malformed rows."""

import gzip
from pathlib import Path

import numpy as np
import pytest

from mlassets.datasets.errors import DatasetFormatError
from mlassets.datasets.susy import COLUMNS, FEATURES, find_susy, read_susy


def test_real_sample(data_dir: Path) -> None:
    frame = read_susy(find_susy(data_dir))
    assert list(frame.columns) == list(COLUMNS)
    assert len(frame) == 10_000
    assert frame["label"].value_counts().to_dict() == {0: 5447, 1: 4553}
    assert all(frame[name].dtype == np.float32 for name in FEATURES)
    assert frame[list(FEATURES)].notna().all().all()


def _write(tmp_path: Path, lines: list[str], gz: bool = True) -> Path:
    path = tmp_path / ("SUSY.csv.gz" if gz else "SUSY.csv")
    text = "\n".join(lines) + "\n"
    if gz:
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


GOOD = "1.0," + ",".join(["0.5"] * 18)


@pytest.mark.parametrize(("bad_line", "message"), [
    ("1.0," + ",".join(["0.5"] * 17), r"line 3, column 'cos_theta_r1': missing field"),
    ("0.0," + ",".join(["0.5"] * 5 + ["abc"] + ["0.5"] * 12), r"line 3, column 'lepton_2_phi': non-numeric value 'abc'"),
    ("2.0," + ",".join(["0.5"] * 18), r"line 3, column 'label': label 2 is not 0 or 1"),
    ("1.0," + ",".join(["0.5"] * 19), r"line 3: expected 19 fields, saw 20"),
    ("1.0," + ",".join(["0.5"] * 17 + ["inf"]), r"line 3, column 'cos_theta_r1': non-finite value 'inf'"),
    ("1.0," + ",".join(["-Infinity"] + ["0.5"] * 17), r"line 3, column 'lepton_1_pT': non-finite value '-Infinity'"),
    ("1.0," + ",".join(["0.5", "1e39"] + ["0.5"] * 16), r"line 3, column 'lepton_1_eta': non-finite value '1e39' "
                                                         r"\(infinite as float32\)"),
])
def test_malformed_row_names_file_and_line(tmp_path: Path, bad_line: str, message: str) -> None:
    path = _write(tmp_path, [GOOD, GOOD, bad_line, GOOD])
    with pytest.raises(DatasetFormatError, match=message) as err:
        read_susy(path)
    assert str(path) in str(err.value)


def test_the_largest_float32_is_kept(tmp_path: Path) -> None:
    frame = read_susy(_write(tmp_path, ["1.0," + ",".join(["3.4028235e38"] + ["0.5"] * 17)]))
    assert frame["lepton_1_pT"].iloc[0] == np.finfo(np.float32).max


def test_plain_csv_and_nrows(tmp_path: Path) -> None:
    frame = read_susy(_write(tmp_path, [GOOD] * 5, gz=False), nrows=3)
    assert len(frame) == 3 and frame["label"].tolist() == [1, 1, 1]


def test_truncated_gzip(data_dir: Path, tmp_path: Path) -> None:
    blob = (data_dir / "susy/SUSY_sample.csv.gz").read_bytes()
    path = tmp_path / "SUSY.csv.gz"
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DatasetFormatError, match="SUSY.csv.gz"):
        read_susy(path)
