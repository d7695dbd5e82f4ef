"""Humidity models on the real weather files: forests, the XGBoost search and pair, selection on validation only,
the 2020Q4 metrics against the truth and the 2021 forecast with its interval."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import AssetCheckResult, materialize
from sklearn.ensemble import RandomForestRegressor

from mlassets.assets import weather
from mlassets.assets.weather.boosted_models import (
    ORIGINAL_TRIAL,
    HumiditySearchConfig,
    booster_from_bytes,
    booster_to_bytes,
    expanding_folds,
    sample_trials,
    search,
    xgboost_params,
)
from mlassets.assets.weather.features import feature_columns
from mlassets.assets.weather.forecast import (
    FORECAST_PLOT_KEY,
    MODEL_ASSETS,
    ORIGINAL_2020Q4_MSE,
    RESIDUAL_PLOT_KEY,
    conformal_half_width,
    humidity_2020q4_metrics,
    selection_table,
)
from mlassets.assets.weather.humidity_models import forest_arrays, predict_forest
from mlassets.datasets.weather import FORECAST_INPUT, OBSERVED, TEST_INPUT, TEST_OUTPUT
from mlassets.models.serialization import npz_arrays, npz_bytes, sha256_hex
from mlassets.resources import DatasetsResource, LakeParquetIOManager, LakeResource

WEATHER_ASSETS = [getattr(weather, name) for name in weather.__all__ if name != "string_count_benchmark"]
NAMES = list(MODEL_ASSETS)


def test_forest_arrays_reproduce_scikit_learn_after_a_round_trip() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(400, 6)), rng.normal(size=400)
    model = RandomForestRegressor(n_estimators=7, max_depth=6, random_state=0).fit(x, y)
    arrays = npz_arrays(npz_bytes(forest_arrays(model, list("abcdef"))))
    new = rng.normal(size=(300, 6))
    np.testing.assert_allclose(predict_forest(arrays, new), model.predict(new), rtol=0, atol=1e-12)
    assert arrays["columns"].tolist() == list("abcdef")


def test_pickled_arrays_are_refused() -> None:
    buffer = io.BytesIO()
    np.savez(buffer, roots=np.array([object()], dtype=object))
    with pytest.raises(ValueError, match="pickle"):
        npz_arrays(buffer.getvalue())


def test_expanding_folds_test_on_the_last_years_and_train_only_before() -> None:
    dates = pd.Series(pd.date_range("2010-01-01", "2019-09-30", freq="D"))
    folds = expanding_folds(dates, 3)
    tested = [(dates[test].min(), dates[test].max()) for _, test in folds]
    assert tested == [(pd.Timestamp("2016-10-01"), pd.Timestamp("2017-09-30")),
                      (pd.Timestamp("2017-10-01"), pd.Timestamp("2018-09-30")),
                      (pd.Timestamp("2018-10-01"), pd.Timestamp("2019-09-30"))]
    for train, test in folds:
        assert dates[train].max() < dates[test].min() and dates[train].min() == dates.min()
    assert [int(train.sum()) for train, _ in folds] == sorted(int(train.sum()) for train, _ in folds)
    with pytest.raises(ValueError, match="more than 12 years"):
        expanding_folds(dates, 12)


def test_a_slow_or_loaded_machine_runs_the_same_trials(monkeypatch: pytest.MonkeyPatch) -> None:
    """The default search runs every trial however long each takes (so the chosen model does not depend on the
    machine's load); a time limit, when set, stops starting trials."""
    from mlassets.assets.weather import boosted_models

    rng = np.random.default_rng(0)
    dates = pd.Series(pd.date_range("2010-01-01", "2015-12-31", freq="D"))
    train = pd.DataFrame({"date": dates, "month": dates.dt.month, **{c: rng.normal(size=len(dates))
                                                                    for c in feature_columns()[1:]}})
    train["humidity"] = 50 + train["month"] + rng.normal(scale=0.1, size=len(dates))
    clock = iter(range(0, 10**9, 1000))  # every reading of the clock is 1,000 s after the one before
    monkeypatch.setattr(boosted_models.time, "perf_counter", lambda: float(next(clock)))
    small = {"trials": 3, "folds": 2, "max_rounds": 5, "early_stopping_rounds": 2}
    assert HumiditySearchConfig().max_seconds is None
    assert list(search(train, HumiditySearchConfig(**small))["trial"]) == [0, 1, 2]
    assert list(search(train, HumiditySearchConfig(**small, max_seconds=60))["trial"]) == [0]


def test_trials_start_with_the_original_and_are_seeded() -> None:
    trials = sample_trials(6, seed=3)
    assert trials[0] == ORIGINAL_TRIAL and len(trials) == 6
    assert trials == sample_trials(6, seed=3) and trials != sample_trials(6, seed=4)
    additive = xgboost_params({**trials[1], "additive": True}, 50, 0)
    assert additive["interaction_constraints"] == str([[i] for i in range(len(feature_columns()))])
    assert "interaction_constraints" not in xgboost_params(ORIGINAL_TRIAL, 50, 0)


def test_booster_round_trip_is_exact_and_refuses_other_features() -> None:
    import xgboost as xgb

    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, len(feature_columns()))).astype(np.float32)
    model = xgb.XGBRegressor(**xgboost_params(ORIGINAL_TRIAL, 20, 0)).fit(x, x @ np.arange(x.shape[1]))
    data = booster_to_bytes(model.get_booster())
    assert data[:1] == b"{"  # UBJSON, XGBoost's own model format, not a pickle
    np.testing.assert_array_equal(booster_from_bytes(data).inplace_predict(x), model.predict(x))
    other = model.get_booster()
    other.feature_names = [f"f{i}" for i in range(x.shape[1])]
    with pytest.raises(ValueError, match="trained on"):
        booster_from_bytes(bytes(other.save_raw("ubj")))


def test_conformal_half_width() -> None:
    residuals = np.array([-9.0, 1, -2, 3, 4, -5, 6, 7, 8])
    assert conformal_half_width(residuals, 0.8) == 8.0  # ceil(10 * 0.8) = 8th smallest |r|
    assert conformal_half_width(residuals, 0.95) == np.inf  # 10 residuals needed for a 95 % bound


def _predictions(validation_errors: dict[str, float], q4_errors: dict[str, float]) -> pd.DataFrame:
    """Two validation and two 2020Q4 days; each model off by a constant (observed humidity only on validation days)."""
    frame = pd.DataFrame({"date": pd.to_datetime(["2020-01-10", "2020-01-11", "2020-10-01", "2020-10-02"]),
                          "split": ["validation", "validation", "test_2020q4", "test_2020q4"],
                          "humidity_observed": [40.0, 60.0, np.nan, np.nan]})
    q4_truth = np.array([30.0, 70.0])
    for name in NAMES:
        frame[f"humidity_{name}"] = np.r_[frame["humidity_observed"][:2] + validation_errors[name],
                                          q4_truth + q4_errors[name]]
    return frame


def _train() -> pd.DataFrame:
    return pd.DataFrame({"date": pd.date_range("2020-01-01", periods=3), "split": "train",
                         "humidity": [40.0, 50.0, 60.0]})


def test_selection_reads_validation_only() -> None:
    validation = {"forest": 2.0, "forest_spark": 1.5, "xgboost": 0.5, "xgboost_spark": 0.6}
    # Whatever the 2020Q4 predictions (xgboost_spark perfect there), the choice follows the validation days.
    for q4 in ({name: 0.0 for name in NAMES},
               {"forest": 9.0, "forest_spark": 9.0, "xgboost": 5.0, "xgboost_spark": 0.0}):
        table = selection_table(_predictions(validation, q4), _train(), level=0.5).set_index("model")
        assert table.index[table["selected"]].tolist() == ["xgboost"]
        assert table.loc["xgboost", "validation_mse"] == pytest.approx(0.25)
        assert table.loc["climatology", "validation_mae"] == pytest.approx(10.0)  # January's training mean: 50
        assert not table.loc["climatology", "selected"]
    with pytest.raises(ValueError, match="observed humidity"):
        selection_table(_predictions(validation, validation).assign(humidity_observed=np.nan), _train(), 0.9)


def _record(name: str, n_trees: int, params: dict) -> pd.DataFrame:
    return pd.DataFrame([{"library": name, "family": "gradient_boosted_trees" if "xgboost" in name else "random_forest",
                          "n_trees": n_trees, "max_depth": 4, "params": json.dumps(params), "train_rows": 3,
                          "train_last": pd.Timestamp("2020-01-03"), "fit_seconds": 1.0, "predict_seconds": 0.1,
                          "predict_rows": 4}])


@pytest.mark.parametrize(("spark_trees", "spark_eta", "same_size", "same_params"),
                         [(5, 0.1, True, True), (6, 0.1, False, True), (5, 0.2, True, False)])
def test_metrics_report_the_truth_and_compare_like_for_like_only(tmp_path: Path, spark_trees: int, spark_eta: float,
                                                                 same_size: bool, same_params: bool) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / TEST_OUTPUT).write_text("date,humidity\n20201001,30.0\n20201002,70.0\n")
    validation = {"forest": 2.0, "forest_spark": 1.5, "xgboost": 0.5, "xgboost_spark": 0.6}
    q4 = {"forest": 3.0, "forest_spark": -1.0, "xgboost": 0.3, "xgboost_spark": 0.0}
    predictions = _predictions(validation, q4)
    selection = selection_table(predictions, _train(), level=0.5)
    results = list(humidity_2020q4_metrics(
        DatasetsResource(data_dir=str(tmp_path / "data")), LakeResource(root=str(tmp_path / "lake")), _train(),
        predictions, selection, _record("scikit-learn", 5, {}), _record("spark-mllib", spark_trees, {}),
        _record("xgboost", 9, {"learning_rate": 0.1}), _record("xgboost.spark", 9, {"learning_rate": spark_eta})))
    table = results[0].value.set_index("model")
    assert table.loc["xgboost", "q4_mse"] == pytest.approx(0.09) and table.loc["forest", "q4_mae"] == pytest.approx(3)
    assert table.loc["xgboost", "validation_mse"] == pytest.approx(0.25)
    assert table.loc["climatology", "q4_mae"] == pytest.approx(20.0)
    assert table.loc["original_reported", "q4_mse"] == ORIGINAL_2020Q4_MSE
    # xgboost is selected on validation although xgboost_spark is exact on 2020Q4
    assert table.index[table["selected"]].tolist() == ["xgboost"]
    assert results[0].metadata["selected_model"].value == "xgboost"
    assert results[0].metadata["selected_2020q4_mse"].value == pytest.approx(0.09)
    checks = {r.check_name: r.passed for r in results if isinstance(r, AssetCheckResult)}
    assert checks == {"same_model_size": same_size, "same_hyperparameters": same_params, "beats_climatology": True,
                      "selected_at_or_below_original_mse": True}
    assert LakeResource(root=str(tmp_path / "lake")).read_bytes(*RESIDUAL_PLOT_KEY)[:4] == b"\x89PNG"


def test_weather_graph_selects_on_validation_and_beats_the_original(data_dir: Path, local_resources: dict,
                                                                   tmp_path: Path) -> None:
    """Everything up to the forecast runs on a data folder without the 2020Q4 truth; the metrics then read it."""
    blind = tmp_path / "no_truth"
    blind.mkdir()
    for name in (OBSERVED, TEST_INPUT, FORECAST_INPUT):
        shutil.copy(data_dir / "weather" / name, blind / name)
    lake = LakeResource(root=str(tmp_path / "lake"))
    resources = {"lake": lake, "spark": local_resources["spark"],
                 "io_manager": LakeParquetIOManager(lake=lake, spark=local_resources["spark"])}
    forest = {"config": {"n_trees": 6, "max_depth": 5}}
    # The default search's first 6 trials, all of them whatever the machine's load (the time limit off).
    search = {"config": {"trials": 6, "max_seconds": 1e6}}
    result = materialize(
        WEATHER_ASSETS,
        selection=[a.key for a in WEATHER_ASSETS if a.key.to_user_string() != "humidity_2020q4_metrics"],
        resources={**resources, "datasets": DatasetsResource(data_dir=str(blind))},
        run_config={"ops": {"humidity_model_standalone": forest, "humidity_model_spark": forest,
                            "humidity_xgboost_search": search}})
    assert result.success
    metrics_run = materialize(WEATHER_ASSETS, selection=["humidity_2020q4_metrics"],
                              resources={**resources, "datasets": DatasetsResource(data_dir=str(data_dir))})
    assert metrics_run.success
    checks = {c.check_name: c.passed for r in (result, metrics_run) for c in r.get_asset_check_evaluations()}
    assert checks == {"chronological_split": True, "no_humidity_in_features": True, "predictions_in_range": True,
                      "selected_beats_climatology": True, "selected_beats_same_size_forests": True,
                      "same_model_size": True, "same_hyperparameters": True, "beats_climatology": True,
                      "selected_at_or_below_original_mse": True, "one_row_per_day_of_2021": True}

    trials = result.output_for_node("humidity_xgboost_search")
    assert len(trials) == 6 and trials["best"].sum() == 1 and trials.iloc[0]["learning_rate"] == 0.07
    assert trials.loc[trials["best"], "cv_mse"].item() == trials["cv_mse"].min()
    metrics = metrics_run.output_for_node("humidity_2020q4_metrics").set_index("model")
    selected = metrics.index[metrics["selected"]].item()
    assert selected.startswith("xgboost")
    assert metrics.loc[selected, "validation_mse"] == metrics.loc[NAMES, "validation_mse"].min()
    assert metrics.loc[selected, "q4_mse"] <= 0.15  # the original reported 0.149
    for name in NAMES:
        assert metrics.loc[name, "fit_seconds"] > 0 and metrics.loc[name, "predict_seconds"] > 0
        assert metrics.loc[name, "q4_mse"] >= metrics.loc[name, "q4_mae"] ** 2
    assert metrics.loc["xgboost", "n_trees"] == metrics.loc["xgboost_spark", "n_trees"] == trials.loc[
        trials["best"], "rounds"].item()
    event = metrics_run.asset_materializations_for_node("humidity_2020q4_metrics")[0]
    assert event.metadata["selected_model"].value == selected
    assert event.metadata["selected_2020q4_mse"].value == pytest.approx(metrics.loc[selected, "q4_mse"])
    assert lake.read_bytes(*RESIDUAL_PLOT_KEY)[:8] == b"\x89PNG\r\n\x1a\n"

    # The stored boosters are XGBoost model files whose sha256 is recorded, and they reproduce the validation MSE.
    predictions = result.output_for_node("humidity_predictions")
    validation = predictions[predictions["split"] == "validation"]
    for name in ("xgboost", "xgboost_spark"):
        record = result.output_for_node(MODEL_ASSETS[name]).iloc[0]
        assert sha256_hex(lake.read_bytes(*record["artifact_key"].split("/"))) == record["artifact_sha256"]
        assert record["artifact_key"].endswith("booster.ubj")
        error = validation[f"humidity_{name}"] - validation["humidity_observed"]
        assert np.mean(error**2) == pytest.approx(record["validation_mse"], rel=1e-5)

    forecast = result.output_for_node("humidity_forecast_2021")
    assert len(forecast) == 365 and forecast["date"].is_monotonic_increasing and set(forecast["model"]) == {selected}
    width = forecast["humidity_upper"] - forecast["humidity_forecast"]
    assert np.allclose(width, forecast["humidity_forecast"] - forecast["humidity_lower"]) and 0 < width.iloc[0] < 2
    assert lake.read_bytes(*FORECAST_PLOT_KEY)[:8] == b"\x89PNG\r\n\x1a\n"
    plot = result.asset_materializations_for_node("humidity_forecast_2021")[0].metadata["plot"].value
    assert plot.startswith("![humidity forecast 2021](data:image/png;base64,iVBOR")
