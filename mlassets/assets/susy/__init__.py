"""The UCI SUSY set streamed through Kafka to train a Keras MLP."""

from mlassets.assets.susy.dataset import susy_dataset
from mlassets.assets.susy.evaluation import susy_evaluation, susy_evaluation_summary
from mlassets.assets.susy.model import susy_model
from mlassets.assets.susy.scaled import susy_test_scaled
from mlassets.assets.susy.train_topic import susy_train_topic

__all__ = ["susy_dataset", "susy_evaluation", "susy_evaluation_summary", "susy_model", "susy_test_scaled",
           "susy_train_topic"]
