"""Daily weather 1990-2020 and humidity forecasts."""

from mlassets.assets.weather.observations import weather_observations

__all__ = ["weather_observations"]
