"""A t-SNE map of the fruit PCA output coloured by class, as a PNG in the lake and in the Dagster UI."""

import base64
import io
import time

import numpy as np
import pandas as pd
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset
from pydantic import Field

from mlassets.automation import FOLLOWS_INPUTS, TRANSIENT_RETRY
from mlassets.resources import LakeResource

ASSET = "fruit_embedding_plot"
PNG_FILE = "tsne.png"
POINTS_DIR = "points"


class FruitEmbeddingPlotConfig(Config):
    """The t-SNE of the PCA output."""

    perplexity: float = Field(default=30.0, gt=0, description="t-SNE perplexity, capped below a third of the rows.")
    seed: int = Field(default=0, description="Seed of the t-SNE optimisation.")
    dpi: int = Field(default=100, ge=30, description="Resolution of the PNG.")


def tsne_points(features: np.ndarray, perplexity: float, seed: int) -> np.ndarray:
    """The rows embedded in 2-D by scikit-learn's t-SNE (PCA initialisation, perplexity capped by the row count)."""
    from sklearn.manifold import TSNE

    if len(features) < 3:
        raise ValueError(f"t-SNE needs at least 3 rows, got {len(features)}")
    perplexity = min(perplexity, (len(features) - 1) / 3)
    return TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed,
                learning_rate="auto").fit_transform(features)


def neighbour_agreement(points: np.ndarray, labels: np.ndarray) -> float:
    """Share of rows whose nearest other row has the same label (how well classes separate)."""
    from sklearn.neighbors import NearestNeighbors

    index = NearestNeighbors(n_neighbors=2).fit(points).kneighbors(points, return_distance=False)
    return float((labels[index[:, 1]] == labels).mean())


def scatter_png(points: pd.DataFrame, title: str, dpi: int) -> bytes:
    """A PNG scatter of x, y coloured by label (legend when there are at most 20 classes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted(points["label"].unique())
    colours = plt.get_cmap("tab20" if len(labels) <= 20 else "gist_ncar")(np.linspace(0, 0.95, len(labels)))
    figure, axes = plt.subplots(figsize=(9, 7), dpi=dpi)
    for label, colour in zip(labels, colours):
        part = points[points["label"] == label]
        axes.scatter(part["x"], part["y"], s=10, color=colour, label=label)
    if len(labels) <= 20:
        axes.legend(fontsize=7, markerscale=1.5, loc="best")
    axes.set_title(title)
    axes.set_xticks([])
    axes.set_yticks([])
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    return buffer.getvalue()


@asset(code_version="1", automation_condition=FOLLOWS_INPUTS, retry_policy=TRANSIENT_RETRY)
def fruit_embedding_plot(context: AssetExecutionContext, config: FruitEmbeddingPlotConfig, lake: LakeResource,
                         fruit_pca: pd.DataFrame) -> MaterializeResult:
    """A PNG t-SNE map of the fruit images' PCA features coloured by class, with its 2-D points as parquet."""
    started = time.perf_counter()
    features = np.asarray(fruit_pca["pca_features"].tolist(), dtype=np.float64)
    labels = fruit_pca["label"].to_numpy()
    xy = tsne_points(features, config.perplexity, config.seed)
    points = pd.DataFrame({"path": fruit_pca["path"], "label": labels, "x": xy[:, 0], "y": xy[:, 1]})
    agreement_2d, agreement_pca = neighbour_agreement(xy, labels), neighbour_agreement(features, labels)
    title = (f"t-SNE of {len(points)} images, {points['label'].nunique()} classes "
             f"({features.shape[1]} PCA components)")
    png = scatter_png(points, title, config.dpi)
    png_uri = lake.write_bytes(png, ASSET, PNG_FILE)
    points_uri = lake.write_parquet(points, ASSET, POINTS_DIR)
    context.log.info(f"fruit_embedding_plot: {png_uri}")
    return MaterializeResult(metadata={
        "plot": MetadataValue.md(f"![t-SNE](data:image/png;base64,{base64.b64encode(png).decode()})"),
        "png_uri": png_uri,
        "points_uri": points_uri,
        "dagster/row_count": len(points),
        "classes": int(points["label"].nunique()),
        "nearest_neighbour_same_class_tsne": round(agreement_2d, 4),
        "nearest_neighbour_same_class_pca": round(agreement_pca, 4),
        "seconds": round(time.perf_counter() - started, 2),
    })
