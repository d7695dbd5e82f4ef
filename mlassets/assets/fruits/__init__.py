"""Fruits-360 images in the lake -> MobileNetV2 features on Spark -> StandardScaler + PCA -> a t-SNE plot."""

from mlassets.assets.fruits.features import fruit_features
from mlassets.assets.fruits.images import fruit_images
from mlassets.assets.fruits.pca import fruit_pca
from mlassets.assets.fruits.plot import fruit_embedding_plot

__all__ = ["fruit_embedding_plot", "fruit_features", "fruit_images", "fruit_pca"]
