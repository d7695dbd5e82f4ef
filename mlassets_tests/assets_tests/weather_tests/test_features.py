"""Humidity features: the month and the same day's inputs, never humidity, on a chronological split."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import AssetCheckResult, Output

from mlassets.assets.weather.features import (
    WeatherFeaturesConfig,
    assign_splits,
    build_features,
    daily_inputs,
    feature_columns,
    weather_features,
)
from mlassets.assets.weather.observations import weather_observations
from mlassets.resources import DatasetsResource


def _inputs(days: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({"temp": rng.uniform(10, 40, days), "wind": rng.uniform(0, 30, days),
                         "rainfall": rng.uniform(0, 50, days)},
                        index=pd.date_range("2020-01-01", periods=days, freq="D", name="date"))


def test_features_of_a_day_use_that_day_and_its_month_only() -> None:
    inputs = _inputs(80)
    changed = inputs.copy()
    changed.iloc[50:] += 17.0
    before, after = build_features(inputs), build_features(changed)
    pd.testing.assert_frame_equal(before.iloc[:50], after.iloc[:50])
    assert not before.iloc[50:].equals(after.iloc[50:])
    assert before.loc["2020-02-10"].tolist() == [2, *inputs.loc["2020-02-10", ["temp", "wind", "rainfall"]]]
    assert not before.isna().any().any()


def test_no_feature_comes_from_humidity() -> None:
    assert not [c for c in feature_columns() if "humidity" in c]
    assert list(build_features(_inputs(40)).columns) == feature_columns() == ["month", "temp", "wind", "rainfall"]


def test_splits_are_chronological() -> None:
    dates = pd.Series(pd.date_range("2019-09-28", "2021-01-02", freq="D"))
    split = assign_splits(dates, pd.Timestamp("2020-09-30"), pd.Timestamp("2019-10-01"))
    assert split.iloc[0] == "train" and split[dates == "2019-09-30"].item() == "train"
    assert split[dates == "2019-10-01"].item() == "validation"
    assert split[dates == "2020-09-30"].item() == "validation"
    assert split[dates == "2020-10-01"].item() == "test_2020q4"
    assert split[dates == "2021-01-01"].item() == "forecast_2021"
    order = ["train", "validation", "test_2020q4", "forecast_2021"]
    assert split.map(order.index).is_monotonic_increasing


def test_daily_inputs_fill_gaps_and_refuse_overlaps() -> None:
    frame = _inputs(10).reset_index()
    series, filled = daily_inputs([frame.drop(index=[4, 5])])
    assert len(series) == 10 and filled == 2
    assert series["temp"].iloc[4] == pytest.approx(frame["temp"].iloc[3] + (frame["temp"].iloc[6] - frame["temp"].iloc[3]) / 3)
    with pytest.raises(ValueError, match="overlap on 2020-01-03"):
        daily_inputs([frame.iloc[:5], frame.iloc[2:]])


def test_weather_features_on_the_real_files(data_dir: Path) -> None:
    datasets = DatasetsResource(data_dir=str(data_dir))
    observations = weather_observations(datasets).value
    results = list(weather_features(WeatherFeaturesConfig(), datasets, observations))
    output = next(r for r in results if isinstance(r, Output))
    checks = {r.check_name: r.passed for r in results if isinstance(r, AssetCheckResult)}
    frame = output.value
    assert checks == {"chronological_split": True, "no_humidity_in_features": True}
    counts = frame["split"].value_counts().to_dict()
    assert counts == {"train": 11_231 - 366, "validation": 366, "test_2020q4": 92, "forecast_2021": 365}
    assert frame.loc[frame["split"].isin(["train", "validation"]), "humidity"].notna().all()
    assert frame.loc[frame["split"].isin(["test_2020q4", "forecast_2021"]), "humidity"].isna().all()
    assert not frame[feature_columns()].isna().any().any()
    # 2020Q4 holds a wind of 152.3 on 2020-10-17: the observations' decimal-point rule applies to the later inputs too.
    assert output.metadata["input_rows_changed_2020q4_2021"].value == 1
    assert frame.loc[frame["date"] == "2020-10-17", "wind"].item() == pytest.approx(15.23)


def test_validation_start_outside_the_observations_is_refused(data_dir: Path) -> None:
    datasets = DatasetsResource(data_dir=str(data_dir))
    observations = weather_observations(datasets).value
    with pytest.raises(ValueError, match="outside the observations"):
        list(weather_features(WeatherFeaturesConfig(validation_start="2021-01-01"), datasets, observations))
