"""Humidity predictions of both forests, their 2020Q4 errors side by side, and the 2021 forecast with its plot."""

import base64
import io
from collections.abc import Iterator

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, MetadataValue, Output, asset

from mlassets.assets.weather.features import Y2021_END, Y2021_START, feature_columns
from mlassets.assets.weather.humidity_models import (
    SCORED_SPLITS,
    load_spark_predictions,
    load_standalone_predictions,
    regression_errors,
)
from mlassets.datasets.weather import TEST_OUTPUT, find_weather, read_weather
from mlassets.metadata import markdown_table, table_metadata
from mlassets.resources import DatasetsResource, LakeResource, SparkResource

PLOT_KEY = ("plots", "humidity_forecast_2021.png")
HUMIDITY_RANGE = (0.0, 100.0)


@asset(
    code_version="1",
    check_specs=[AssetCheckSpec("predictions_in_range", asset="humidity_predictions",
                                description="every prediction is a humidity between 0 and 100 %")],
)
def humidity_predictions(datasets: DatasetsResource, lake: LakeResource, spark: SparkResource,
                         weather_features: pd.DataFrame, humidity_model_standalone: pd.DataFrame,
                         humidity_model_spark: pd.DataFrame) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
    """Humidity of each validation, 2020Q4 and 2021 day from both stored forests, with the observed humidity where known."""
    rows = weather_features[weather_features["split"].isin(SCORED_SPLITS)].reset_index(drop=True)
    truth = read_weather(find_weather(datasets.path(), TEST_OUTPUT)).set_index("date")["humidity"]
    q4 = rows["split"] == "test_2020q4"
    if set(truth.index) != set(rows.loc[q4, "date"]):
        raise ValueError(f"{TEST_OUTPUT} covers {len(truth)} days, not the {int(q4.sum())} days of the 2020Q4 inputs")
    frame = rows[["date", "split"]].copy()
    frame["humidity_observed"] = rows["humidity"].where(~q4, rows["date"].map(truth))
    frame["humidity_standalone"] = load_standalone_predictions(lake, humidity_model_standalone.iloc[0],
                                                               rows[feature_columns()].to_numpy())
    frame["humidity_spark"] = load_spark_predictions(lake, spark, humidity_model_spark.iloc[0], rows)
    predicted = frame[["humidity_standalone", "humidity_spark"]].to_numpy()
    in_range = bool(np.isfinite(predicted).all() and ((predicted >= HUMIDITY_RANGE[0]) & (predicted <= HUMIDITY_RANGE[1])).all())
    yield Output(frame, metadata={**table_metadata(frame),
                                  "rows_per_split": MetadataValue.json(frame["split"].value_counts().to_dict())})
    yield AssetCheckResult(check_name="predictions_in_range", passed=in_range,
                           metadata={"min": float(np.nanmin(predicted)), "max": float(np.nanmax(predicted))})


def error_table(predictions: pd.DataFrame, records: dict[str, pd.Series], train: pd.DataFrame) -> pd.DataFrame:
    """One row per model: 2020Q4 and validation MSE/MAE, model size, fit and predict seconds, plus a baseline.

    The baseline predicts the training days' mean humidity of the same month (the overall mean where a month
    has no training day).
    """
    climatology = train.groupby(train["date"].dt.month)["humidity"].mean()
    rows = []
    for name, record in records.items():
        row = {"model": name, "library": record["library"], "family": record["family"],
               "n_trees": int(record["n_trees"]), "max_depth": int(record["max_depth"]),
               "train_rows": int(record["train_rows"])}
        for split, prefix in (("test_2020q4", "q4"), ("validation", "validation")):
            part = predictions[predictions["split"] == split]
            row[f"{prefix}_mse"], row[f"{prefix}_mae"] = regression_errors(part["humidity_observed"],
                                                                           part[f"humidity_{name}"])
        row.update(fit_seconds=float(record["fit_seconds"]), predict_seconds=float(record["predict_seconds"]),
                   predict_rows=int(record["predict_rows"]))
        rows.append(row)
    baseline = {"model": "climatology", "library": "pandas", "family": "monthly_mean_of_training_days"}
    for split, prefix in (("test_2020q4", "q4"), ("validation", "validation")):
        part = predictions[predictions["split"] == split]
        baseline[f"{prefix}_mse"], baseline[f"{prefix}_mae"] = regression_errors(
            part["humidity_observed"], part["date"].dt.month.map(climatology).fillna(train["humidity"].mean()))
    rows.append(baseline)
    table = pd.DataFrame(rows)
    counts = ["n_trees", "max_depth", "train_rows", "predict_rows"]
    table[counts] = table[counts].astype("Int64")  # the baseline row has none
    return table


@asset(
    code_version="1",
    check_specs=[
        AssetCheckSpec("same_model_size", asset="humidity_2020q4_metrics",
                       description="both forests have the same family, trees, depth and training rows, "
                                   "so their timings compare like for like"),
        AssetCheckSpec("beats_climatology", asset="humidity_2020q4_metrics",
                       description="both forests' 2020Q4 MAE is below the monthly-mean baseline"),
    ],
)
def humidity_2020q4_metrics(weather_features: pd.DataFrame, humidity_predictions: pd.DataFrame,
                            humidity_model_standalone: pd.DataFrame,
                            humidity_model_spark: pd.DataFrame) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
    """2020Q4 MSE and MAE against the truth for both forests and a baseline, with fit and predict seconds side by side."""
    records = {"standalone": humidity_model_standalone.iloc[0], "spark": humidity_model_spark.iloc[0]}
    table = error_table(humidity_predictions, records, weather_features[weather_features["split"] == "train"])
    size = ["family", "n_trees", "max_depth", "train_rows", "train_last"]
    same = all(records["standalone"][k] == records["spark"][k] for k in size)
    by_model = table.set_index("model")
    beats = bool((by_model.loc[["standalone", "spark"], "q4_mae"] < by_model.loc["climatology", "q4_mae"]).all())
    timings = by_model.loc[["standalone", "spark"], ["library", "n_trees", "max_depth", "train_rows", "fit_seconds",
                                                     "predict_seconds", "predict_rows", "q4_mse", "q4_mae"]]
    yield Output(table, metadata={
        **table_metadata(table, preview_rows=5),
        "side_by_side": MetadataValue.md(markdown_table(timings.T.reset_index(names=""))),
        **{f"{m}_q4_{e}": float(by_model.loc[m, f"q4_{e}"]) for m in ("standalone", "spark", "climatology")
           for e in ("mse", "mae")},
        **{f"{m}_{t}": float(by_model.loc[m, t]) for m in ("standalone", "spark")
           for t in ("fit_seconds", "predict_seconds")},
    })
    yield AssetCheckResult(check_name="same_model_size", passed=bool(same),
                           metadata={k: f"{records['standalone'][k]} / {records['spark'][k]}" for k in size})
    yield AssetCheckResult(check_name="beats_climatology", passed=beats, metadata={
        f"{m}_q4_mae": float(by_model.loc[m, "q4_mae"]) for m in ("standalone", "spark", "climatology")})


def forecast_plot(predictions: pd.DataFrame) -> bytes:
    """A PNG: 2020Q4 truth against both forests' predictions, then both 2021 forecasts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 6.5), dpi=90, layout="constrained")
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1)
    q4 = predictions[predictions["split"] == "test_2020q4"]
    y2021 = predictions[predictions["split"] == "forecast_2021"]
    top.plot(q4["date"], q4["humidity_observed"], color="black", lw=1.6, label="truth")
    for axis, part in ((top, q4), (bottom, y2021)):
        axis.plot(part["date"], part["humidity_standalone"], color="tab:blue", lw=1, label="scikit-learn forest")
        axis.plot(part["date"], part["humidity_spark"], color="tab:orange", lw=1, ls="--", label="Spark MLlib forest")
        axis.set_ylabel("humidity (%)")
        axis.grid(alpha=0.3)
        axis.legend(loc="upper right", fontsize=8)
    top.set_title("2020Q4: truth vs predictions")
    bottom.set_title("2021 forecast")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


@asset(
    code_version="1",
    check_specs=[AssetCheckSpec("one_row_per_day_of_2021", asset="humidity_forecast_2021",
                                description="365 distinct days 2021-01-01..2021-12-31, humidity within 0-100 %")],
)
def humidity_forecast_2021(lake: LakeResource, weather_features: pd.DataFrame,
                           humidity_predictions: pd.DataFrame) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
    """Daily 2021 humidity forecast of both forests next to the 2021 temp, wind and rainfall inputs."""
    inputs = weather_features.loc[weather_features["split"] == "forecast_2021", ["date", "temp", "wind", "rainfall"]]
    forecast = inputs.merge(humidity_predictions.loc[humidity_predictions["split"] == "forecast_2021",
                                                     ["date", "humidity_standalone", "humidity_spark"]],
                            on="date", how="left").sort_values("date").reset_index(drop=True)
    png = forecast_plot(humidity_predictions)
    plot_uri = lake.write_bytes(png, *PLOT_KEY)
    values = forecast[["humidity_standalone", "humidity_spark"]].to_numpy()
    expected = pd.date_range(Y2021_START, Y2021_END, freq="D")
    complete = bool(len(forecast) == len(expected) and (forecast["date"].to_numpy() == expected.to_numpy()).all()
                    and np.isfinite(values).all() and ((values >= 0) & (values <= 100)).all())
    monthly = forecast.groupby(forecast["date"].dt.month)[["humidity_standalone", "humidity_spark"]].mean()
    yield Output(forecast, metadata={
        **table_metadata(forecast),
        "plot": MetadataValue.md(f"![humidity 2020Q4 and 2021](data:image/png;base64,{base64.b64encode(png).decode()})"),
        "plot_path": MetadataValue.path(plot_uri),
        "monthly_mean": MetadataValue.md(markdown_table(monthly.reset_index(names="month"))),
    })
    yield AssetCheckResult(check_name="one_row_per_day_of_2021", passed=complete, metadata={"rows": len(forecast)})
