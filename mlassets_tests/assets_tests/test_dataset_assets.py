"""The dataset assets called on the real samples, and their pure helpers on small inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import build_asset_context

from mlassets.assets.iot.images import CifarImagesConfig, cifar10_images
from mlassets.assets.susy.dataset import SusyDatasetConfig, split_rows, susy_dataset
from mlassets.assets.weather.observations import clean_observations, weather_observations
from mlassets.resources import DatasetsResource


def test_cifar10_images(data_dir: Path) -> None:
    output, check = list(cifar10_images(build_asset_context(), CifarImagesConfig(),
                                        DatasetsResource(data_dir=str(data_dir))))
    frame = output.value
    assert len(frame) == 10_000 and frame["image_id"].is_unique
    assert frame["image_id"].iloc[0] == "test_batch.bin:0" and frame["label_name"].iloc[0] == "cat"
    assert all(len(b) == 3072 for b in frame["image"].head())
    assert output.metadata["dagster/row_count"].value == 10_000
    assert check.passed


def test_split_is_seeded_disjoint_and_sized() -> None:
    a, b = split_rows(1000, 0.2, 1), split_rows(1000, 0.2, 1)
    assert (a == b).all() and (a == "test").sum() == 200
    assert not (split_rows(1000, 0.2, 2) == a).all()


def test_susy_dataset(data_dir: Path) -> None:
    out = susy_dataset(SusyDatasetConfig(max_rows=5000), DatasetsResource(data_dir=str(data_dir)))
    frame = out.value
    assert len(frame) == 5000 and frame["row_id"].is_unique
    assert (frame["split"] == "test").sum() == 1000
    assert set(frame.columns[:3]) == {"row_id", "split", "label"}


def test_cleaning_divides_decimal_shifts_and_interpolates_the_rest() -> None:
    frame = pd.DataFrame({
        "date": pd.date_range("2020-01-01", periods=5),
        "temp": [10.0, 399.0, 14.0, 15.0, 16.0],
        "wind": [1.0, 2.0, 3.0, 191.1, 5.0],
        "rainfall": [0.0, 0.0, 5000.0, 0.0, 0.0],
        "humidity": [50.0] * 5,
    })
    clean, changes = clean_observations(frame)
    assert clean["temp"].tolist() == [10.0, 39.9, 14.0, 15.0, 16.0]
    assert clean["wind"].tolist() == pytest.approx([1.0, 2.0, 3.0, 19.11, 5.0])
    assert clean["rainfall"].tolist() == [0.0] * 5  # a tenth of 5000 is still out of range: interpolated
    assert clean["imputed"].tolist() == [False, True, True, True, False]
    table = changes.set_index("column")
    assert table["replaced"].to_dict() == {"temp": 1, "wind": 1, "rainfall": 1, "humidity": 0}
    assert table["divided_by_10"].to_dict() == {"temp": 1, "wind": 1, "rainfall": 0, "humidity": 0}
    assert table["interpolated"].to_dict() == {"temp": 0, "wind": 0, "rainfall": 1, "humidity": 0}


def test_weather_observations(data_dir: Path) -> None:
    out = weather_observations(DatasetsResource(data_dir=str(data_dir)))
    frame = out.value
    assert len(frame) == 11_231
    assert frame["temp"].max() <= 60 and frame["wind"].max() <= 100 and frame["rainfall"].max() <= 300
    assert out.metadata["rows_changed"].value == int(frame["imputed"].sum()) >= 104 + 49 + 37 - 10
    assert not np.isnan(frame[["temp", "wind", "rainfall", "humidity"]].to_numpy()).any()
