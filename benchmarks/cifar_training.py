"""CIFAR-10 training on the 10,000 sample images: the issue's baseline against `cifar_classifier`'s defaults.

Baseline: ResNet-20, 5 epochs, batch 64, no augmentation (the asset before augmentation and the schedule came in).
Defaults: `CifarClassifierConfig()` as the asset trains it. Both train on the same seeded 8,000 images and are scored
on the same 2,000 held out, one after the other per seed, so both see the same machine load. Training seconds are
`model.fit` alone (the first epoch includes TensorFlow's tracing); the ratio is defaults over baseline.

Run alone (no servers needed): `python -m benchmarks.cifar_training`, BENCH_CIFAR_SEEDS (default "0"; e.g. "0,1");
the data folder is MLASSETS_TEST_DATA or ../shared/data.
"""

from __future__ import annotations

import os
from typing import Any

from mlassets.assets.iot.classifier import CifarClassifierConfig, train_classifier
from mlassets.datasets.cifar10 import read_cifar10
from mlassets.paths import sample_data_dir
from benchmarks.common import report

SEEDS = [int(s) for s in os.environ.get("BENCH_CIFAR_SEEDS", "0").split(",")]
BASELINE = {"architecture": "resnet", "blocks_per_stage": 3, "epochs": 5, "batch_size": 64, "augment": False}


def run(stack: Any = None) -> None:
    """Per seed: the baseline, then the defaults; one report line each, the figure being the training seconds."""
    data = read_cifar10(sample_data_dir() / "cifar10")
    for seed in SEEDS:
        baseline = train_classifier(CifarClassifierConfig(**BASELINE, seed=seed), data.images, data.labels)
        defaults = CifarClassifierConfig(seed=seed)
        default = train_classifier(defaults, data.images, data.labels)
        common = {"seed": seed, "train_images": int(len(default.train)), "held_out_images": int(len(default.holdout))}
        report("cifar_training_baseline_s", baseline.train_seconds, baseline.train_seconds, "s",
               held_out_accuracy=round(baseline.accuracy, 4), config=BASELINE, **common)
        report("cifar_training_default_s", default.train_seconds, baseline.train_seconds, "s",
               held_out_accuracy=round(default.accuracy, 4),
               config=defaults.model_dump(exclude={"seed", "train_images", "holdout_fraction"}), **common)


if __name__ == "__main__":
    run()
