"""UCI SUSY csv(.gz): no header, a 0/1 label then 18 float features per line."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from mlassets.datasets.errors import DatasetFormatError

FEATURES: tuple[str, ...] = (
    "lepton_1_pT", "lepton_1_eta", "lepton_1_phi", "lepton_2_pT", "lepton_2_eta", "lepton_2_phi",
    "missing_energy_magnitude", "missing_energy_phi", "MET_rel", "axial_MET", "M_R", "M_TR_2", "R",
    "MT2", "S_R", "M_Delta_R", "dPhi_r_b", "cos_theta_r1",
)
N_FEATURES = len(FEATURES)
COLUMNS: tuple[str, ...] = ("label", *FEATURES)
FILE_NAMES = ("SUSY.csv.gz", "SUSY.csv", "SUSY_sample.csv.gz")
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103  # the smallest magnitude that float32 conversion rounds to infinity (1e39...)


def find_susy(root: str | Path) -> Path:
    """The SUSY file under root (or root/susy): the full set first, then the sample."""
    root = Path(root)
    for base in (root, root / "susy"):
        for name in FILE_NAMES:
            if (base / name).is_file():
                return base / name
    raise FileNotFoundError(f"no SUSY file ({', '.join(FILE_NAMES)}) under {root}")


def read_susy(path: str | Path, nrows: int | None = None) -> pd.DataFrame:
    """Read SUSY rows into a frame: label int8 (1 = signal) and 18 finite float32 features."""
    path = Path(path)
    try:
        raw = pd.read_csv(path, header=None, names=list(COLUMNS), nrows=nrows, dtype=str,
                          skip_blank_lines=False, na_filter=False)
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+), saw (\d+)", str(exc))
        if match:
            raise DatasetFormatError(path, f"expected {len(COLUMNS)} fields, saw {match.group(2)}",
                                     line=int(match.group(1))) from exc
        raise DatasetFormatError(path, f"not a SUSY csv: {exc}") from exc
    except (UnicodeDecodeError, EOFError, OSError) as exc:
        raise DatasetFormatError(path, f"unreadable: {exc}") from exc
    if raw.empty:
        raise DatasetFormatError(path, "no rows")
    values = raw.apply(lambda col: pd.to_numeric(col.str.strip(), errors="coerce"))
    invalid = values.isna().to_numpy()
    if invalid.any():
        row, col = np.argwhere(invalid)[0]
        text = raw.iat[row, col]
        reason = "missing field (short row)" if text == "" else f"non-numeric value {text!r}"
        raise DatasetFormatError(path, reason, line=int(row) + 1, column=COLUMNS[col])
    labels = values["label"].to_numpy()
    bad = np.flatnonzero((labels != 0) & (labels != 1))
    if bad.size:
        raise DatasetFormatError(path, f"label {float(labels[bad[0]]):g} is not 0 or 1", line=int(bad[0]) + 1,
                                 column="label")
    infinite = ~(np.abs(values[list(FEATURES)].to_numpy()) < FLOAT32_OVERFLOW)
    if infinite.any():
        row, col = np.argwhere(infinite)[0]
        raise DatasetFormatError(path, f"non-finite value {raw.iat[row, col + 1]!r} (infinite as float32)",
                                 line=int(row) + 1, column=FEATURES[col])
    frame = values.astype({name: np.float32 for name in FEATURES})
    frame["label"] = labels.astype(np.int8)
    return frame
