"""Keras CNNs for 32x32 CIFAR-10 images, with the training augmentation and the CIFAR normalisation built in.

Two layouts: `build_cifar_resnet9` (the default of `cifar_classifier`: D. Page's ResNet-9, "How to train your
ResNet", 2018, at a quarter of its width; few layers at full resolution, so about three times cheaper per image on
a CPU than ResNet-20) and `build_cifar_resnet` (He et al.'s ResNet-(6n+2), n blocks per stage; 3 gives ResNet-20).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import keras

CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)


def _inputs(shift: float, augment: bool) -> tuple["keras.KerasTensor", "keras.KerasTensor"]:
    """The image input and its normalised tensor, randomly flipped and shifted in training when augment is set."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = inputs
    if augment:
        x = layers.RandomFlip("horizontal", seed=0)(x)  # active in training only
        if shift > 0:
            x = layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=0)(x)
    x = layers.Rescaling(1.0 / 255.0)(x)
    return inputs, layers.Normalization(mean=list(CIFAR_MEAN), variance=[s * s for s in CIFAR_STD])(x)


def _conv_bn_relu(x: "keras.KerasTensor", filters: int, pool: bool = False) -> "keras.KerasTensor":
    from keras import layers

    x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
    if pool:
        x = layers.MaxPooling2D()(x)
    return layers.Activation("relu")(layers.BatchNormalization(momentum=0.9)(x))


def build_cifar_resnet9(base_filters: int = 16, classes: int = 10, shift: float = 0.0625,
                        augment: bool = True) -> "keras.Model":
    """ResNet-9 taking uint8-range RGB and returning softmax: conv(w) -> conv(2w)+pool + residual of two convs ->
    conv(4w)+pool -> conv(8w)+pool + residual of two convs -> global max pool -> dense (Page's net has w = 64).

    With augment, training sees each image flipped left-right at random and, when shift > 0, moved by up to that
    fraction of its side with reflected edges (random crops); inference always sees the image unchanged.
    """
    import keras
    from keras import layers

    inputs, x = _inputs(shift, augment)
    x = _conv_bn_relu(x, base_filters)
    x = _conv_bn_relu(x, 2 * base_filters, pool=True)
    x = layers.Add()([x, _conv_bn_relu(_conv_bn_relu(x, 2 * base_filters), 2 * base_filters)])
    x = _conv_bn_relu(x, 4 * base_filters, pool=True)
    x = _conv_bn_relu(x, 8 * base_filters, pool=True)
    x = layers.Add()([x, _conv_bn_relu(_conv_bn_relu(x, 8 * base_filters), 8 * base_filters)])
    x = layers.GlobalMaxPooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax", name="class_probabilities")(x)
    return keras.Model(inputs, outputs, name="cifar_resnet9")


def build_cifar_resnet(blocks_per_stage: int = 3, base_filters: int = 16, classes: int = 10,
                       shift: float = 0.0, augment: bool = True) -> "keras.Model":
    """ResNet-(6n+2) (n = blocks_per_stage; 3 gives ResNet-20) taking uint8-range RGB and returning softmax.

    With augment, training sees each image flipped left-right at random and, when shift > 0, moved by up to that
    fraction of its side with reflected edges (random crops); inference always sees the image unchanged.
    """
    import keras
    from keras import layers

    inputs, x = _inputs(shift, augment)
    x = _conv_bn_relu(x, base_filters)
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
