"""Daily weather csv files: integer YYYYMMDD dates with temp, wind, rainfall and humidity columns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from mlassets.datasets.errors import DatasetFormatError

OBSERVED = "observed_1.csv"
TEST_INPUT = "test_input_1.csv"
TEST_OUTPUT = "test_output_1.csv"
FORECAST_INPUT = "forecasted_1.csv"
FILE_COLUMNS: dict[str, tuple[str, ...]] = {
    OBSERVED: ("date", "temp", "wind", "rainfall", "humidity"),
    TEST_INPUT: ("date", "temp", "wind", "rainfall"),
    TEST_OUTPUT: ("date", "humidity"),
    FORECAST_INPUT: ("date", "temp", "wind", "rainfall"),
}


def find_weather(root: str | Path, name: str = OBSERVED) -> Path:
    """The weather file `name` under root (or root/weather)."""
    root = Path(root)
    for base in (root, root / "weather"):
        if (base / name).is_file():
            return base / name
    raise FileNotFoundError(f"no weather file {name} under {root}")


def read_weather(path: str | Path, columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a weather csv: `date` as datetime64 and the other columns as float64, checked row by row."""
    path = Path(path)
    wanted = tuple(columns) if columns is not None else FILE_COLUMNS.get(path.name, ("date",))
    try:
        raw = pd.read_csv(path, dtype=str, na_filter=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(path, f"not a csv: {exc}") from exc
    raw.columns = [c.strip() for c in raw.columns]
    missing = [c for c in wanted if c not in raw.columns]
    if missing:
        raise DatasetFormatError(path, f"missing column(s) {missing}; found {list(raw.columns)}")
    frame = pd.DataFrame(index=raw.index)
    dates = pd.to_datetime(raw["date"].str.strip(), format="%Y%m%d", errors="coerce")
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise DatasetFormatError(path, f"date {raw['date'].iat[row]!r} is not YYYYMMDD", line=row + 2,
                                 column="date")
    frame["date"] = dates
    for name in wanted:
        if name == "date":
            continue
        values = pd.to_numeric(raw[name].str.strip(), errors="coerce")
        if values.isna().any():
            row = int(np.flatnonzero(values.isna().to_numpy())[0])
            raise DatasetFormatError(path, f"non-numeric value {raw[name].iat[row]!r}", line=row + 2,
                                     column=name)
        frame[name] = values.astype(np.float64)
    if frame["date"].duplicated().any():
        row = int(np.flatnonzero(frame["date"].duplicated().to_numpy())[0])
        raise DatasetFormatError(path, "duplicate date", line=row + 2, column="date")
    return frame.reset_index(drop=True)
