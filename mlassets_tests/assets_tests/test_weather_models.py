"""Both humidity forests on the real weather files with a small size, their metrics, forecast and plot."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import AssetCheckResult, materialize
from sklearn.ensemble import RandomForestRegressor

from mlassets.assets import weather
from mlassets.assets.weather.features import feature_columns
from mlassets.assets.weather.forecast import PLOT_KEY, humidity_2020q4_metrics
from mlassets.assets.weather.humidity_models import (
    arrays_from_bytes,
    arrays_to_bytes,
    forest_arrays,
    predict_forest,
)
from mlassets.resources import DatasetsResource, LakeParquetIOManager, LakeResource

WEATHER_ASSETS = [getattr(weather, name) for name in weather.__all__ if name != "string_count_benchmark"]


def test_forest_arrays_reproduce_scikit_learn_after_a_round_trip() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 6)), rng.normal(size=400)
    model = RandomForestRegressor(n_estimators=7, max_depth=6, random_state=0).fit(x, y)
    arrays = arrays_from_bytes(arrays_to_bytes(forest_arrays(model, list("abcdef"))))
    new = rng.normal(size=(300, 6))
    np.testing.assert_allclose(predict_forest(arrays, new), model.predict(new), rtol=0, atol=1e-12)
    assert arrays["columns"].tolist() == list("abcdef")


def test_pickled_arrays_are_refused() -> None:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, roots=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        arrays_from_bytes(buffer.getvalue())


def _record(library: str, n_trees: int) -> pd.DataFrame:
    return pd.DataFrame([{"library": library, "family": "random_forest_regressor", "n_trees": n_trees,
                          "max_depth": 4, "train_rows": 3, "train_last": pd.Timestamp("2020-01-03"),
                          "fit_seconds": 1.0, "predict_seconds": 0.1, "predict_rows": 4}])


@pytest.mark.parametrize(("spark_trees", "same_size"), [(5, True), (6, False)])
def test_metrics_compare_like_for_like_only(spark_trees: int, same_size: bool) -> None:
    features = pd.DataFrame({"date": pd.date_range("2020-01-01", periods=3), "split": "train",
                             "humidity": [40.0, 50.0, 60.0]})
    predictions = pd.DataFrame({
        "date": pd.to_datetime(["2020-01-10", "2020-01-11", "2020-10-01", "2020-10-02"]),
        "split": ["validation", "validation", "test_2020q4", "test_2020q4"],
        "humidity_observed": [40.0, 60.0, 30.0, 70.0],
        "humidity_standalone": [41.0, 59.0, 31.0, 68.0],
        "humidity_spark": [40.0, 62.0, 30.0, 70.0],
    })
    results = list(humidity_2020q4_metrics(features, predictions, _record("scikit-learn", 5),
                                           _record("spark-mllib", spark_trees)))
    table = results[0].value.set_index("model")
    assert table.loc["standalone", "q4_mse"] == pytest.approx((1 + 4) / 2)
    assert table.loc["standalone", "q4_mae"] == pytest.approx(1.5)
    assert table.loc["spark", "validation_mae"] == pytest.approx(1.0)
    # Baseline: the training mean of the same month (January: 50), else the overall training mean (also 50).
    assert table.loc["climatology", "validation_mae"] == pytest.approx(10.0)
    assert table.loc["climatology", "q4_mae"] == pytest.approx(20.0)
    checks = {r.check_name: r.passed for r in results if isinstance(r, AssetCheckResult)}
    assert checks == {"same_model_size": same_size, "beats_climatology": True}


def test_weather_graph_with_small_forests(data_dir: Path, local_resources: dict, tmp_path: Path) -> None:
    lake = LakeResource(root=str(tmp_path / "lake"))
    forest = {"config": {"n_trees": 6, "max_depth": 5}}
    result = materialize(
        WEATHER_ASSETS,
        resources={"datasets": DatasetsResource(data_dir=str(data_dir)), "lake": lake,
                   "spark": local_resources["spark"],
                   "io_manager": LakeParquetIOManager(lake=lake, spark=local_resources["spark"])},
        run_config={"ops": {"humidity_model_standalone": forest, "humidity_model_spark": forest}},
    )
    assert result.success
    checks = {c.check_name: c.passed for c in result.get_asset_check_evaluations()}
    assert checks == {"chronological_split": True, "no_humidity_in_features": True, "predictions_in_range": True,
                      "same_model_size": True, "beats_climatology": True, "one_row_per_day_of_2021": True}

    metrics = result.output_for_node("humidity_2020q4_metrics").set_index("model")
    assert set(metrics.index) == {"standalone", "spark", "climatology"}
    for model in ("standalone", "spark"):
        assert metrics.loc[model, "n_trees"] == 6 and metrics.loc[model, "max_depth"] == 5
        assert metrics.loc[model, "fit_seconds"] > 0 and metrics.loc[model, "predict_seconds"] > 0
        assert 0 < metrics.loc[model, "q4_mae"] < metrics.loc["climatology", "q4_mae"]
        assert metrics.loc[model, "q4_mse"] >= metrics.loc[model, "q4_mae"] ** 2

    predictions = result.output_for_node("humidity_predictions")
    q4 = predictions[predictions["split"] == "test_2020q4"]
    assert len(q4) == 92 and q4["humidity_observed"].iloc[0] == 31.29  # test_output_1.csv, 2020-10-01
    # The stored scikit-learn forest reproduces the trained one: the record's validation MSE comes back.
    record = result.output_for_node("humidity_model_standalone").iloc[0]
    validation = predictions[predictions["split"] == "validation"]
    assert np.mean((validation["humidity_standalone"] - validation["humidity_observed"]) ** 2) == pytest.approx(
        record["validation_mse"], rel=1e-9)
    assert record["features"] == ",".join(feature_columns())

    forecast = result.output_for_node("humidity_forecast_2021")
    assert len(forecast) == 365 and forecast["date"].is_monotonic_increasing
    assert list(forecast.columns) == ["date", "temp", "wind", "rainfall", "humidity_standalone", "humidity_spark"]
    assert lake.read_bytes(*PLOT_KEY)[:8] == b"\x89PNG\r\n\x1a\n"
    events = result.asset_materializations_for_node("humidity_forecast_2021")
    assert events[0].metadata["plot"].value.startswith("![humidity 2020Q4 and 2021](data:image/png;base64,iVBOR")
    assert (tmp_path / "lake" / "humidity_forecast_2021").is_dir()
