"""Humidity gradient-boosted trees: a time-series cross-validated search on the training years, then XGBoost in
one process and on Spark (`xgboost.spark`) with the hyper-parameters it chose."""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from mlassets.assets.weather.features import feature_columns
from mlassets.assets.weather.humidity_models import (
    fit_on_spark,
    model_record,
    read_artifact,
    record_metadata,
    regression_errors,
    split_rows,
)
from mlassets.automation import FOLLOWS_INPUTS, SPARK_POOL, TRANSIENT_RETRY
from mlassets.metadata import markdown_table, table_metadata
from mlassets.models.serialization import sha256_hex
from mlassets.resources import LakeResource, SparkResource
from mlassets.stack.executor_env import XGBOOST

BOOSTED_FAMILY = "gradient_boosted_trees"
# The original project's tuned XGBoost (its notebook: 10,000 rounds, here capped by early stopping): the first trial.
ORIGINAL_TRIAL: dict[str, Any] = {"max_depth": 3, "learning_rate": 0.07, "min_child_weight": 1.5, "subsample": 0.6,
                                  "colsample_bytree": 0.4, "reg_alpha": 0.75, "reg_lambda": 0.45, "max_bin": 256,
                                  "additive": False}
TRIAL_KEYS = tuple(ORIGINAL_TRIAL)


class HumiditySearchConfig(Config):
    """The bounds of the hyper-parameter search; the default 16 trials take about a minute on 2 quiet cores."""

    trials: int = Field(default=16, ge=1, description="Hyper-parameter sets tried: the original project's first, then "
                                                      "random ones from the search space (a larger search: 200).")
    max_seconds: float | None = Field(default=None, gt=0, description="No trial starts after this many seconds of "
                                      "search; None runs every trial. A limit makes the chosen model depend on the "
                                      "machine's speed and load, so the default has none.")
    folds: int = Field(default=4, ge=1, le=20, description="Expanding-window folds: each tests on one of the last "
                                                           "`folds` training years and trains on every earlier day.")
    max_rounds: int = Field(default=3000, ge=1, description="Most boosting rounds of a fit; early stopping on the "
                                                            "fold's test year stops sooner.")
    early_stopping_rounds: int = Field(default=100, ge=1, description="Rounds without a better fold-year MSE before "
                                                                      "a fit stops.")
    seed: int = Field(default=0, description="Seed of the random hyper-parameter sets and of XGBoost's sampling.")


def expanding_folds(dates: pd.Series, n_folds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train mask, test mask) per fold: each tests on one of the last n_folds years of the dates, trains before it."""
    end = dates.max() + pd.Timedelta(days=1)
    folds = []
    for k in range(n_folds, 0, -1):
        start, stop = end - pd.DateOffset(years=k), end - pd.DateOffset(years=k - 1)
        train, test = (dates < start).to_numpy(), ((dates >= start) & (dates < stop)).to_numpy()
        if not train.any() or not test.any():
            raise ValueError(f"{n_folds} yearly folds need more than {n_folds} years of training days "
                             f"({dates.min():%Y-%m-%d}..{dates.max():%Y-%m-%d})")
        folds.append((train, test))
    return folds


def sample_trials(n: int, seed: int) -> list[dict[str, Any]]:
    """The original project's hyper-parameters, then n - 1 random sets from the search space."""
    rng = np.random.default_rng(seed)

    def log_uniform(low: float, high: float) -> float:
        return float(f"{np.exp(rng.uniform(np.log(low), np.log(high))):.3g}")

    trials = [dict(ORIGINAL_TRIAL)]
    while len(trials) < n:
        trials.append({
            "max_depth": int(rng.choice([1, 2, 3, 4, 6])), "learning_rate": log_uniform(0.03, 0.3),
            "min_child_weight": float(rng.choice([1.0, 3.0, 10.0])),
            "subsample": round(float(rng.uniform(0.6, 1.0)), 2),
            "colsample_bytree": round(float(rng.uniform(0.5, 1.0)), 2), "reg_alpha": 0.0,
            "reg_lambda": log_uniform(0.1, 10.0), "max_bin": int(rng.choice([256, 1024])),
            "additive": bool(rng.random() < 0.5),
        })
    return trials[:n]


def xgboost_params(trial: dict[str, Any], n_estimators: int, seed: int) -> dict[str, Any]:
    """The keyword arguments of both XGBRegressor and SparkXGBRegressor for a trial's hyper-parameters."""
    params = {key: trial[key] for key in TRIAL_KEYS if key != "additive"}
    if trial["additive"]:
        # Every tree splits on one feature only, so the model is a sum of one-feature functions.
        params["interaction_constraints"] = str([[i] for i in range(len(feature_columns()))])
    return {**params, "n_estimators": int(n_estimators), "objective": "reg:squarederror", "tree_method": "hist",
            "random_state": int(seed)}


def _fit_fold(x: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray, trial: dict[str, Any],
              config: HumiditySearchConfig) -> tuple[float, float, int]:
    """(MSE, MAE, rounds) of one fold's fit, stopped early on the fold's test year."""
    import xgboost as xgb

    # One thread per fit, folds fitted side by side: XGBoost's threads wait actively for each other, and on a
    # machine busy with other work a 2-thread fit measured 10-17 times slower than a 1-thread one.
    model = xgb.XGBRegressor(**xgboost_params(trial, config.max_rounds, config.seed), n_jobs=1,
                             early_stopping_rounds=config.early_stopping_rounds)
    model.fit(x[train], y[train], eval_set=[(x[test], y[test])], verbose=False)
    mse, mae = regression_errors(y[test], model.predict(x[test]))  # predicts with the best round's trees
    return mse, mae, model.best_iteration + 1


def cross_validate(x: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], trial: dict[str, Any],
                   config: HumiditySearchConfig, pool: ThreadPoolExecutor) -> dict[str, Any]:
    """A trial's mean fold MSE and MAE, each fold at its early-stopped round, and the mean of those rounds."""
    results = list(pool.map(lambda fold: _fit_fold(x, y, *fold, trial, config), folds))
    mses, maes, rounds = (np.array(column) for column in zip(*results))
    return {"cv_mse": float(mses.mean()), "cv_mae": float(maes.mean()), "rounds": int(round(rounds.mean())),
            "fold_mse": ", ".join(f"{m:.3f}" for m in mses)}


def search(train: pd.DataFrame, config: HumiditySearchConfig) -> pd.DataFrame:
    """One row per trial run: hyper-parameters, cross-validated errors, rounds, seconds; the lowest cv_mse is best."""
    x, y = train[feature_columns()].to_numpy(np.float32), train["humidity"].to_numpy(np.float64)
    folds = expanding_folds(train["date"].reset_index(drop=True), config.folds)
    start, rows = time.perf_counter(), []
    with ThreadPoolExecutor(max_workers=min(len(folds), os.cpu_count() or 1)) as pool:
        for number, trial in enumerate(sample_trials(config.trials, config.seed)):
            if rows and config.max_seconds is not None and time.perf_counter() - start > config.max_seconds:
                break
            began = time.perf_counter()
            rows.append({"trial": number, **trial, **cross_validate(x, y, folds, trial, config, pool),
                         "seconds": time.perf_counter() - began})
    table = pd.DataFrame(rows)
    table["best"] = table.index == table["cv_mse"].idxmin()
    table["seed"] = config.seed
    return table


def best_trial(trials: pd.DataFrame) -> tuple[dict[str, Any], int, int]:
    """(hyper-parameters, rounds, seed) of the search's best trial."""
    row = trials[trials["best"]].iloc[0]
    trial = {key: row[key].item() if hasattr(row[key], "item") else row[key] for key in TRIAL_KEYS}
    return trial, int(row["rounds"]), int(row["seed"])


@asset(code_version="2", automation_condition=FOLLOWS_INPUTS)
def humidity_xgboost_search(config: HumiditySearchConfig,
                            weather_features: pd.DataFrame) -> Output[pd.DataFrame]:
    """XGBoost hyper-parameter sets with their expanding-window cross-validated errors on the training years."""
    train, _ = split_rows(weather_features)
    start = time.perf_counter()
    trials = search(train, config)
    seconds = time.perf_counter() - start
    dates = train["date"].reset_index(drop=True)
    folds = pd.DataFrame([{"fold": k, "train_last": f"{dates[tr].max():%Y-%m-%d}",
                           "test": f"{dates[te].min():%Y-%m-%d}..{dates[te].max():%Y-%m-%d}",
                           "test_days": int(te.sum())}
                          for k, (tr, te) in enumerate(expanding_folds(dates, config.folds))])
    best, rounds, _ = best_trial(trials)
    shown = trials.sort_values("cv_mse").drop(columns=["seed"])
    return Output(trials, metadata={
        **table_metadata(trials),
        "trials": MetadataValue.md(markdown_table(shown, max_rows=len(shown))),
        "folds": MetadataValue.md(markdown_table(folds)),
        "search_seconds": seconds,
        "trials_run": len(trials),
        "stopped_by_time_limit": len(trials) < config.trials,
        "best_cv_mse": float(trials.loc[trials["best"], "cv_mse"].iat[0]),
        "best_params": MetadataValue.json({**best, "rounds": rounds}),
    })


def booster_to_bytes(booster: Any) -> bytes:
    """A fitted booster in XGBoost's UBJSON model format (no pickle), named with the feature columns."""
    booster.feature_names = feature_columns()
    return bytes(booster.save_raw("ubj"))


def booster_from_bytes(data: bytes) -> Any:
    """A booster read from XGBoost's model format; refused when it was trained on other feature columns."""
    import xgboost as xgb

    booster = xgb.Booster()
    booster.load_model(bytearray(data))
    if booster.feature_names != feature_columns():
        raise ValueError(f"the booster was trained on {booster.feature_names}, not the current {feature_columns()}")
    return booster


def load_booster_predictions(lake: LakeResource, record: pd.Series, features: np.ndarray) -> np.ndarray:
    """Predictions of a stored XGBoost booster (sha256 checked) for the feature rows."""
    booster = booster_from_bytes(read_artifact(lake, record))
    return booster.inplace_predict(np.asarray(features, dtype=np.float32)).astype(np.float64)


def _store_booster(context: AssetExecutionContext, lake: LakeResource, booster: Any, scored: pd.DataFrame,
                   predicted: np.ndarray) -> tuple[str, str, str]:
    data = booster_to_bytes(booster)
    reloaded = booster_from_bytes(data).inplace_predict(scored[feature_columns()].to_numpy(np.float32))
    if not np.allclose(reloaded, predicted, rtol=0, atol=1e-4):
        raise RuntimeError("the stored booster does not reproduce the fitted model's predictions")
    key = f"models/{context.asset_key.to_user_string()}/{context.run_id}/booster.ubj"
    return key, lake.write_bytes(data, *key.split("/")), sha256_hex(data)


def _boosted_record(context: AssetExecutionContext, library: str, params: dict[str, Any], train: pd.DataFrame,
                    scored: pd.DataFrame, predicted: np.ndarray, fit_seconds: float, predict_seconds: float,
                    artifact: tuple[str, str, str]) -> pd.DataFrame:
    validation = (scored["split"] == "validation").to_numpy()
    size = {"n_trees": params["n_estimators"], **{k: v for k, v in params.items() if k != "n_estimators"}}
    return model_record(context, library, BOOSTED_FAMILY, size, train, scored[validation], predicted[validation],
                        fit_seconds, predict_seconds, len(scored), *artifact)


@asset(code_version="1", automation_condition=FOLLOWS_INPUTS, retry_policy=TRANSIENT_RETRY)
def humidity_model_xgboost(context: AssetExecutionContext, lake: LakeResource, weather_features: pd.DataFrame,
                           humidity_xgboost_search: pd.DataFrame) -> Output[pd.DataFrame]:
    """Single-process XGBoost with the search's best hyper-parameters: timings, validation errors, UBJ booster."""
    import xgboost as xgb

    train, scored = split_rows(weather_features)
    trial, rounds, seed = best_trial(humidity_xgboost_search)
    params = xgboost_params(trial, rounds, seed)
    model = xgb.XGBRegressor(**params, n_jobs=1)  # one thread, as each Spark worker (see _fit_fold for why)
    start = time.perf_counter()
    model.fit(train[feature_columns()].to_numpy(np.float32), train["humidity"].to_numpy(np.float64))
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    predicted = model.predict(scored[feature_columns()].to_numpy(np.float32)).astype(np.float64)
    predict_seconds = time.perf_counter() - start
    artifact = _store_booster(context, lake, model.get_booster(), scored, predicted)
    record = _boosted_record(context, f"xgboost {xgb.__version__}", params, train, scored, predicted, fit_seconds,
                             predict_seconds, artifact)
    return Output(record, metadata=record_metadata(record, params=MetadataValue.json(params)))


@asset(code_version="1", automation_condition=FOLLOWS_INPUTS, pool=SPARK_POOL, retry_policy=TRANSIENT_RETRY)
def humidity_model_xgboost_spark(context: AssetExecutionContext, lake: LakeResource, spark: SparkResource,
                                 weather_features: pd.DataFrame,
                                 humidity_xgboost_search: pd.DataFrame) -> Output[pd.DataFrame]:
    """XGBoost on Spark workers (xgboost.spark), same hyper-parameters: timings, validation errors, UBJ booster."""
    import xgboost as xgb
    from xgboost.spark import SparkXGBRegressor

    train, scored = split_rows(weather_features)
    trial, rounds, seed = best_trial(humidity_xgboost_search)
    params = xgboost_params(trial, rounds, seed)
    session = spark.session_for(XGBOOST)  # on a cluster the executors need xgboost
    workers = session.sparkContext.defaultParallelism  # one barrier task per core the cluster offers
    # verbose=False: the workers otherwise log the training RMSE of every round.
    estimator = SparkXGBRegressor(features_col="features", label_col="humidity", num_workers=workers, verbose=False,
                                  **params)
    model, predicted, fit_seconds, predict_seconds = fit_on_spark(session, estimator, weather_features)
    artifact = _store_booster(context, lake, model.get_booster(), scored, predicted)
    record = _boosted_record(context, f"xgboost.spark {xgb.__version__}", params, train, scored, predicted,
                             fit_seconds, predict_seconds, artifact)
    return Output(record, metadata=record_metadata(record, params=MetadataValue.json(params), num_workers=workers,
                                                   spark_master=session.sparkContext.master))
