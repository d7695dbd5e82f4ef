"""CIFAR-10 images from simulated IoT producers, classified and counted per producer."""

from mlassets.assets.iot.classifier import cifar_classifier
from mlassets.assets.iot.error_tables import class_accuracy, producer_error_counts
from mlassets.assets.iot.images import cifar10_images
from mlassets.assets.iot.inference import inference_records
from mlassets.assets.iot.stream import image_data, sample_image_messages

__all__ = ["cifar10_images", "cifar_classifier", "class_accuracy", "image_data", "inference_records",
           "producer_error_counts", "sample_image_messages"]
