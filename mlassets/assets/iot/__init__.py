"""CIFAR-10 images from simulated IoT producers, classified and counted per producer."""

from mlassets.assets.iot.classifier import cifar_classifier
from mlassets.assets.iot.images import cifar10_images

__all__ = ["cifar10_images", "cifar_classifier"]
