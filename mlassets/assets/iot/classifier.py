"""The CIFAR-10 classifier asset: a ResNet-9 CNN trained, evaluated and saved in the model store."""

import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import pandas as pd
from dagster import AssetCheckResult, AssetCheckSpec, AssetExecutionContext, Config, MetadataValue, Output, asset
from pydantic import Field

from mlassets.automation import TRANSIENT_RETRY
from mlassets.datasets.cifar10 import LABELS, images_array
from mlassets.metadata import markdown_table, table_metadata
from mlassets.names import CIFAR_MODEL_COLLECTION, CIFAR_MODEL_NAME, IMAGE_DATABASE
from mlassets.resources import MongoResource

if TYPE_CHECKING:
    import keras

MIN_ACCURACY = 0.40


class CifarClassifierConfig(Config):
    """Training settings of the CIFAR-10 CNN."""

    architecture: Literal["resnet9", "resnet"] = Field(
        default="resnet9", description="'resnet9': Page's ResNet-9 layout (models/cifar_resnet.py); 'resnet': "
                                       "He et al.'s ResNet-(6n+2) with blocks_per_stage blocks per stage.")
    base_filters: int = Field(default=16, ge=1, description="Filters of the first convolution; later stages have "
                                                            "2, 4 (and for resnet9 8) times as many.")
    blocks_per_stage: int = Field(default=3, ge=1, description="Residual blocks per stage of 'resnet' "
                                                               "(3 = ResNet-20); unused by resnet9.")
    epochs: int = Field(default=10, ge=1, description="Passes over the training images.")
    batch_size: int = Field(default=128, ge=1, description="Images per gradient step.")
    train_images: int = Field(default=8000, ge=10, description="At most this many training images.")
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of images held out for evaluation.")
    peak_learning_rate: float = Field(default=8e-3, gt=0, description="AdamW learning rate at the end of the warmup; "
                                                                      "it starts at a 25th of that and decays to 0 "
                                                                      "along a cosine (one cycle).")
    warmup_fraction: float = Field(default=0.2, ge=0, lt=1, description="Share of the gradient steps spent warming "
                                                                        "up to the peak learning rate.")
    weight_decay: float = Field(default=5e-4, ge=0, description="AdamW decoupled weight decay.")
    augment: bool = Field(default=True, description="Random left-right flips (and shifts, see shift) of the training "
                                                    "images; False trains on the images as they are.")
    shift: float = Field(default=0.0625, ge=0, lt=0.5, description="Largest random shift of a training image, as a "
                                                                   "fraction of its side (0.0625 = 2 px crops); "
                                                                   "0 turns it off.")
    seed: int = Field(default=0, description="Seed of the split and of the weight initialisation.")


@dataclass(frozen=True)
class TrainedClassifier:
    """A fitted model, its held-out predictions and what the fit cost."""

    model: "keras.Model"
    train: np.ndarray
    holdout: np.ndarray
    predicted: np.ndarray
    accuracy: float
    final_train_loss: float
    train_seconds: float


def holdout_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint (train, holdout) row indices."""
    order = np.random.default_rng(seed).permutation(n)
    cut = int(round(n * fraction))
    return order[cut:], order[:cut]


def one_cycle(config: CifarClassifierConfig, train_images: int) -> "keras.optimizers.schedules.LearningRateSchedule":
    """The learning rate per step: a linear warmup to the peak, then a cosine decay to 0 by the last step."""
    import keras

    steps = math.ceil(train_images / config.batch_size) * config.epochs
    warmup = int(steps * config.warmup_fraction)
    return keras.optimizers.schedules.CosineDecay(config.peak_learning_rate / 25, max(steps - warmup, 1), alpha=0.0,
                                                  warmup_target=config.peak_learning_rate, warmup_steps=warmup)


def build_model(config: CifarClassifierConfig) -> "keras.Model":
    """The untrained CNN the config describes."""
    from mlassets.models.cifar_resnet import build_cifar_resnet, build_cifar_resnet9

    if config.architecture == "resnet9":
        return build_cifar_resnet9(config.base_filters, shift=config.shift, augment=config.augment)
    return build_cifar_resnet(config.blocks_per_stage, config.base_filters, shift=config.shift, augment=config.augment)


def train_classifier(config: CifarClassifierConfig, images: np.ndarray, labels: np.ndarray) -> TrainedClassifier:
    """Split, fit with the one-cycle AdamW schedule and predict the held-out images (uint8 N x 32 x 32 x 3)."""
    import keras

    train, holdout = holdout_split(len(labels), config.holdout_fraction, config.seed)
    train = train[: config.train_images]
    keras.utils.set_random_seed(config.seed)
    model = build_model(config)
    model.compile(optimizer=keras.optimizers.AdamW(one_cycle(config, len(train)), weight_decay=config.weight_decay),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    start = time.perf_counter()
    history = model.fit(images[train].astype("float32"), labels[train], epochs=config.epochs,
                        batch_size=config.batch_size, verbose=0)
    seconds = time.perf_counter() - start
    predicted = model.predict(images[holdout].astype("float32"), batch_size=256, verbose=0).argmax(axis=1)
    return TrainedClassifier(model=model, train=train, holdout=holdout, predicted=predicted,
                             accuracy=float((predicted == labels[holdout]).mean()),
                             final_train_loss=float(history.history["loss"][-1]), train_seconds=seconds)


@asset(
    code_version="3",
    retry_policy=TRANSIENT_RETRY,
    check_specs=[AssetCheckSpec("held_out_accuracy", asset="cifar_classifier", blocking=True,
                                description=f"held-out accuracy is at least {MIN_ACCURACY}")],
)
def cifar_classifier(context: AssetExecutionContext, config: CifarClassifierConfig, mongo: MongoResource,
                     cifar10_images: pd.DataFrame) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
    """The trained CNN's model-store record (model_id, sha256, metrics); the weights live in the model store."""
    images, labels = images_array(cifar10_images), cifar10_images["label"].to_numpy(np.int64)
    fitted = train_classifier(config, images, labels)
    model, holdout, predicted, accuracy = fitted.model, fitted.holdout, fitted.predicted, fitted.accuracy
    per_class = pd.DataFrame({
        "class": LABELS,
        "total": np.bincount(labels[holdout], minlength=10),
        "correct": np.bincount(labels[holdout][predicted == labels[holdout]], minlength=10),
    })
    per_class["accuracy"] = per_class["correct"] / per_class["total"].clip(lower=1)
    metrics = {"held_out_accuracy": accuracy, "train_images": int(len(fitted.train)),
               "held_out_images": int(len(holdout)), "final_train_loss": fitted.final_train_loss,
               "train_seconds": round(fitted.train_seconds, 1)}
    passed = accuracy >= MIN_ACCURACY
    record = mongo.model_store(IMAGE_DATABASE, CIFAR_MODEL_COLLECTION).save(
        CIFAR_MODEL_NAME, model, metrics=metrics, checks={"held_out_accuracy": passed},
        code_version=context.assets_def.code_versions_by_key[context.asset_key],
        metadata={"config": config.model_dump(), "run_id": context.run_id},
    )
    frame = pd.DataFrame([{"model_id": record.model_id, "sha256": record.sha256,
                           "held_out_accuracy": accuracy, "created_at": record.created_at}])
    yield Output(frame, metadata={
        **table_metadata(frame), "model_id": record.model_id, "parameters": int(model.count_params()),
        "held_out_accuracy": accuracy, "train_seconds": round(fitted.train_seconds, 1),
        "per_class": MetadataValue.md(markdown_table(per_class)),
    })
    yield AssetCheckResult(check_name="held_out_accuracy", passed=passed,
                           metadata={"accuracy": accuracy, "threshold": MIN_ACCURACY})
