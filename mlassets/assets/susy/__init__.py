"""The UCI SUSY set streamed through Kafka to train a Keras MLP."""

from mlassets.assets.susy.dataset import susy_dataset

__all__ = ["susy_dataset"]
