"""The names mlassets shares with its servers: Kafka topics and consumer groups, Mongo databases and collections, and
the model-store names. Each is written here once; the code, `deploy/` and `benchmarks/` import it from here.

A plain module at the bottom of the layers (no imports), so anything may use it, the CLI and the EMR scripts included.
"""

from __future__ import annotations

# Kafka topics
IMAGE_TOPIC = "image_data"  # the IoT image messages, drained by inference_records / `mlassets stream infer`
TRAIN_TOPIC = "trainData"  # the SUSY training rows, read by susy_model
DLQ_SUFFIX = ".dlq"


def dlq_topic(topic: str) -> str:
    """The dead-letter topic of a topic."""
    return f"{topic}{DLQ_SUFFIX}"


IMAGE_DLQ_TOPIC = dlq_topic(IMAGE_TOPIC)
TRAIN_DLQ_TOPIC = dlq_topic(TRAIN_TOPIC)

# Kafka consumer groups
INFERENCE_GROUP = "mlassets-inference"  # the inference drain: shared by every member to scale out
TRAINER_GROUP = "mlassets-susy-trainer"  # the SUSY trainer's reads of TRAIN_TOPIC

# Mongo: the IoT group's database and its collections
IMAGE_DATABASE = "image_database"
INFERENCE_COLLECTION = "inferences"  # one document per image message
CIFAR_MODEL_COLLECTION = "models"  # the CIFAR classifier's model store
WRONG_INFERENCE_STATS_COLLECTION = "wrong_inference_stats"  # the producer_error_counts day table
CLASS_ACCURACY_COLLECTION = "class_accuracy"  # the class_accuracy day table

# Mongo: the SUSY group's database and model store
SUSY_DATABASE = "bigdata"
SUSY_MODEL_COLLECTION = "MLModels"

# Model-store names (a saved version's id is `<name>:v<n>`)
CIFAR_MODEL_NAME = "cifar_classifier"
SUSY_MODEL_NAME = "susy_mlp"
