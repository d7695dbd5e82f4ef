"""A ResNet-20-style Keras CNN for 32x32 CIFAR-10 images, with the CIFAR normalisation built in."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def build_cifar_resnet(blocks_per_stage: int = 3, base_filters: int = 16, classes: int = 10,
                       shift: float = 0.0) -> "keras.Model":
    """ResNet-(6n+2) (n = blocks_per_stage; 3 gives ResNet-20) taking uint8-range RGB and returning softmax.

    Training sees each image flipped left-right at random and, when shift > 0, moved by up to that fraction of its
    side with reflected edges (random crops); inference sees the image unchanged.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = layers.RandomFlip("horizontal", seed=0)(inputs)  # active in training only
    if shift > 0:
        x = layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=0)(x)
    x = layers.Rescaling(1.0 / 255.0)(x)
    x = layers.Normalization(mean=list(CIFAR_MEAN), variance=[s * s for s in CIFAR_STD])(x)
    x = layers.Conv2D(base_filters, 3, padding="same", use_bias=False)(x)
    x = layers.Activation("relu")(layers.BatchNormalization(momentum=0.9)(x))
    for stage in range(3):
        filters = base_filters * 2**stage
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            shortcut = x
            y = layers.Conv2D(filters, 3, strides=stride, padding="same", use_bias=False)(x)
            y = layers.Activation("relu")(layers.BatchNormalization(momentum=0.9)(y))
            y = layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
            y = layers.BatchNormalization(momentum=0.9)(y)
            if stride != 1 or shortcut.shape[-1] != filters:
                shortcut = layers.BatchNormalization(momentum=0.9)(
                    layers.Conv2D(filters, 1, strides=stride, use_bias=False)(shortcut))
            x = layers.Activation("relu")(layers.Add()([shortcut, y]))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax", name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name=f"cifar_resnet{6 * blocks_per_stage + 2}")
