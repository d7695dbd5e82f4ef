"""Weather csv and Fruits-360 folder readers on the real files and on broken copies."""

from pathlib import Path

import pytest

from mlassets.datasets.errors import DatasetFormatError
from mlassets.datasets.fruits360 import find_fruits, list_fruit_files
from mlassets.datasets.weather import FORECAST_INPUT, OBSERVED, TEST_OUTPUT, find_weather, read_weather


def test_real_observations(data_dir: Path) -> None:
    frame = read_weather(find_weather(data_dir, OBSERVED))
    assert len(frame) == 11_231
    assert str(frame["date"].iloc[0].date()) == "1990-01-01"
    assert str(frame["date"].iloc[-1].date()) == "2020-09-30"
    assert frame["temp"].max() == 399


def test_real_other_files(data_dir: Path) -> None:
    assert len(read_weather(find_weather(data_dir, TEST_OUTPUT))) == 92
    assert list(read_weather(find_weather(data_dir, FORECAST_INPUT)).columns) == ["date", "temp", "wind", "rainfall"]


@pytest.mark.parametrize(("text", "message"), [
    ("date,temp,wind,rainfall\n19900101,1,2,3\n", r"observed_1.csv: missing column\(s\) \['humidity'\]"),
    ("date,temp,wind,rainfall,humidity\n19900101,1,2,3,4\n19900102,x,2,3,4\n",
     r"line 3, column 'temp': non-numeric value 'x'"),
    ("date,temp,wind,rainfall,humidity\n19901301,1,2,3,4\n", r"line 2, column 'date'"),
])
def test_malformed_file_names_the_problem(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / OBSERVED
    path.write_text(text)
    with pytest.raises(DatasetFormatError, match=message):
        read_weather(path)


def test_fruit_folders(data_dir: Path) -> None:
    files = list_fruit_files(find_fruits(data_dir))
    assert len(files) == 2060
    assert files["label"].nunique() == 103
    assert (files.groupby("label").size() == 20).all()
    assert "Kumquats" in set(files["label"])
