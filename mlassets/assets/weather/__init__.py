"""Daily weather 1990-2020 and humidity forecasts."""

from mlassets.assets.weather.boosted_models import (
    humidity_model_xgboost,
    humidity_model_xgboost_spark,
    humidity_xgboost_search,
)
from mlassets.assets.weather.features import weather_features
from mlassets.assets.weather.forecast import (
    humidity_2020q4_metrics,
    humidity_forecast_2021,
    humidity_model_selection,
    humidity_predictions,
)
from mlassets.assets.weather.humidity_models import humidity_model_spark, humidity_model_standalone
from mlassets.assets.weather.observations import weather_observations
from mlassets.assets.weather.string_count import string_count_benchmark

__all__ = [
    "humidity_2020q4_metrics",
    "humidity_forecast_2021",
    "humidity_model_selection",
    "humidity_model_spark",
    "humidity_model_standalone",
    "humidity_model_xgboost",
    "humidity_model_xgboost_spark",
    "humidity_predictions",
    "humidity_xgboost_search",
    "string_count_benchmark",
    "weather_features",
    "weather_observations",
]
