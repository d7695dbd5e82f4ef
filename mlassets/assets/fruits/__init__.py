"""Fruits-360 images, their MobileNetV2 features, PCA and the t-SNE plot."""
