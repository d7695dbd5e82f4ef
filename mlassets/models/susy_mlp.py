"""The SUSY MLP of the original pipeline: the Keras network that reads the 18 standard-scaled features."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mlassets.datasets.susy import N_FEATURES
from mlassets.names import SUSY_MODEL_NAME

if TYPE_CHECKING:
    import keras


def build_susy_mlp(n_features: int = N_FEATURES) -> "keras.Model":
    """Dense 128 relu, Dropout 0.2, Dense 256, Dropout 0.4, Dense 128, Dropout 0.4, Dense 1 sigmoid (68,481 weights)."""
    import keras
    from keras import layers

    return keras.Sequential([
        keras.Input(shape=(n_features,), name="features"),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.2),
        layers.Dense(256, activation="relu"),
        layers.Dropout(0.4),
        layers.Dense(128, activation="relu"),
        layers.Dropout(0.4),
        layers.Dense(1, activation="sigmoid", name="signal_probability"),
    ], name=SUSY_MODEL_NAME)
