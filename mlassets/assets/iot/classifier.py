"""The CIFAR-10 classifier asset: a ResNet-20-style CNN trained, evaluated and saved in the model store."""

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

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

    epochs: int = Field(default=5, ge=1, description="Passes over the training images.")
    batch_size: int = Field(default=64, ge=1, description="Images per gradient step.")
    train_images: int = Field(default=8000, ge=10, description="At most this many training images.")
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1, description="Share of images held out for evaluation.")
    peak_learning_rate: float = Field(default=6e-3, gt=0, description="AdamW learning rate at the end of the warmup; "
                                                                      "it starts at a 25th of that and decays to 0 "
                                                                      "along a cosine (one cycle).")
    warmup_fraction: float = Field(default=0.2, ge=0, lt=1, description="Share of the gradient steps spent warming "
                                                                        "up to the peak learning rate.")
    weight_decay: float = Field(default=5e-4, ge=0, description="AdamW decoupled weight decay.")
    shift: float = Field(default=0.0625, ge=0, lt=0.5, description="Largest random shift of a training image, as a "
                                                                   "fraction of its side (0.0625 = 2 px crops); "
                                                                   "0 turns it off. Flips are always on.")
    blocks_per_stage: int = Field(default=3, ge=1, description="Residual blocks per stage (3 = ResNet-20).")
    seed: int = Field(default=0, description="Seed of the split and of the weight initialisation.")


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


@asset(
    code_version="2",
    retry_policy=TRANSIENT_RETRY,
    check_specs=[AssetCheckSpec("held_out_accuracy", asset="cifar_classifier", blocking=True,
                                description=f"held-out accuracy is at least {MIN_ACCURACY}")],
)
def cifar_classifier(context: AssetExecutionContext, config: CifarClassifierConfig, mongo: MongoResource,
                     cifar10_images: pd.DataFrame) -> Iterator[Output[pd.DataFrame] | AssetCheckResult]:
    """The trained CNN's model-store record (model_id, sha256, metrics); the weights live in the model store."""
    import keras

    from mlassets.models.cifar_resnet import build_cifar_resnet

    images, labels = images_array(cifar10_images), cifar10_images["label"].to_numpy(np.int64)
    train, holdout = holdout_split(len(labels), config.holdout_fraction, config.seed)
    train = train[: config.train_images]
    keras.utils.set_random_seed(config.seed)
    model = build_cifar_resnet(config.blocks_per_stage, shift=config.shift)
    model.compile(optimizer=keras.optimizers.AdamW(one_cycle(config, len(train)), weight_decay=config.weight_decay),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(images[train].astype("float32"), labels[train], epochs=config.epochs,
                        batch_size=config.batch_size, verbose=0)
    probabilities = model.predict(images[holdout].astype("float32"), batch_size=256, verbose=0)
    predicted = probabilities.argmax(axis=1)
    accuracy = float((predicted == labels[holdout]).mean())
    per_class = pd.DataFrame({
        "class": LABELS,
        "total": np.bincount(labels[holdout], minlength=10),
        "correct": np.bincount(labels[holdout][predicted == labels[holdout]], minlength=10),
    })
    per_class["accuracy"] = per_class["correct"] / per_class["total"].clip(lower=1)
    metrics = {"held_out_accuracy": accuracy, "train_images": int(len(train)), "held_out_images": int(len(holdout)),
               "final_train_loss": float(history.history["loss"][-1])}
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
        "held_out_accuracy": accuracy, "per_class": MetadataValue.md(markdown_table(per_class)),
    })
    yield AssetCheckResult(check_name="held_out_accuracy", passed=passed,
                           metadata={"accuracy": accuracy, "threshold": MIN_ACCURACY})
