"""MobileNetV2 image features (no top, global average pooling, 224x224 RGB): weight choice, decoding, a per-process cache."""

from __future__ import annotations

import io
import os
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from mlassets.models.serialization import sha256_hex
from mlassets.models.worker_imports import import_keras

if TYPE_CHECKING:
    import keras

IMAGE_SIZE = 224
FEATURE_SIZE = 1280
# The file keras.applications.MobileNetV2(weights="imagenet", include_top=False, alpha=1.0) downloads.
IMAGENET_NO_TOP_FILE = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
WEIGHT_CHOICES = ("auto", "imagenet", "none")
RANDOM_INIT = "MobileNetV2 He-normal random initialisation"


class WeightsUnavailableError(FileNotFoundError):
    """Pretrained weights were asked for but are not on this machine (there is no silent fallback)."""


class ImageDecodeError(ValueError):
    """Bytes that Pillow cannot decode into an image."""


@dataclass(frozen=True)
class WeightsChoice:
    """What the feature model is initialised with: `imagenet`, a weights `file`, or `none` (seeded random)."""

    requested: str
    source: str
    path: str | None
    seed: int
    note: str

    @property
    def pretrained(self) -> bool:
        return self.source != "none"


def keras_cache_dir() -> Path:
    """The Keras cache folder that keras.utils.get_file uses: $KERAS_HOME or ~/.keras."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")


def imagenet_weights_path() -> Path:
    """Where the Keras cache keeps MobileNetV2's no-top ImageNet weights."""
    return keras_cache_dir() / "models" / IMAGENET_NO_TOP_FILE


def resolve_weights(weights: str, seed: int = 0) -> WeightsChoice:
    """Turn the `weights` setting (auto, imagenet, none or a .h5 path) into a choice, failing loudly when unavailable."""
    cached = imagenet_weights_path()
    if weights == "none":
        return WeightsChoice(weights, "none", None, seed, f"random initialisation (seed {seed}), asked for")
    if weights == "imagenet":
        if not cached.is_file():
            raise WeightsUnavailableError(
                f"MobileNetV2 ImageNet weights were asked for but {cached} does not exist and nothing is downloaded "
                f"here: copy {IMAGENET_NO_TOP_FILE} into {cached.parent} (or set KERAS_HOME), give the file's "
                "path as `weights`, or choose `weights: none` for a seeded random initialisation")
        return WeightsChoice(weights, "imagenet", str(cached), seed, f"ImageNet weights from the Keras cache {cached}")
    if weights == "auto":
        if cached.is_file():
            return WeightsChoice(weights, "imagenet", str(cached), seed, f"auto: ImageNet weights found at {cached}")
        return WeightsChoice(weights, "none", None, seed,
                             f"auto: NO ImageNet weights at {cached}, so a RANDOM initialisation (seed {seed}) is "
                             "used; features are not pretrained")
    path = Path(weights).expanduser()
    if path.suffix != ".h5":
        raise ValueError(f"weights must be one of {WEIGHT_CHOICES} or a path to a .h5 weights file, not {weights!r}")
    if not path.is_file():
        raise WeightsUnavailableError(f"MobileNetV2 weights file {path} does not exist")
    return WeightsChoice(weights, "file", str(path.resolve()), seed, f"weights from the file {path.resolve()}")


def build_feature_model(choice: WeightsChoice | None = None) -> "keras.Model":
    """MobileNetV2 with include_top=False, pooling='avg' on 224x224x3, initialised as the choice says.

    Without a choice the weights are left for the caller to set. A random choice draws every convolution kernel
    from a seeded He-normal distribution: with Keras' default Glorot kernels and untrained BatchNorm the activations
    shrink layer by layer and the pooled features come out near 1e-11, useless even for tests.
    """
    import keras

    pretrained = choice is not None and choice.pretrained
    model = keras.applications.MobileNetV2(
        include_top=False, pooling="avg", input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
        weights=choice.path if pretrained else None,
    )
    if choice is not None and not pretrained:
        rng = np.random.default_rng(choice.seed)
        for layer in model.layers:
            if isinstance(layer, keras.layers.DepthwiseConv2D):
                fan_in = int(np.prod(layer.kernel.shape[:2]))
            elif isinstance(layer, keras.layers.Conv2D):
                fan_in = int(np.prod(layer.kernel.shape[:3]))
            else:
                continue
            layer.kernel.assign(rng.normal(0.0, np.sqrt(2.0 / fan_in), size=layer.kernel.shape).astype(np.float32))
    return model


@dataclass(frozen=True)
class FeatureWeights:
    """What every worker builds the same feature model from: a Keras .h5 weights file's bytes (and its name, whose
    ending picks Keras' loader: `.weights.h5` or the legacy `.h5`), or a random seed."""

    h5: bytes | None
    seed: int
    name: str = IMAGENET_NO_TOP_FILE

    @cached_property  # hashed once per object: the driver names it twice, the worker checks it once per build
    def sha256(self) -> str:
        """The sha256 of the .h5 bytes, or of the seeded initialisation's name."""
        return sha256_hex(self.h5 if self.h5 is not None else f"{RANDOM_INIT} seed {self.seed}".encode())


def feature_weights(choice: WeightsChoice) -> FeatureWeights:
    """The weights of a choice as the workers get them: the .h5 file's bytes when pretrained, else the seed (the
    driver builds no model: each TensorFlow start-up on it took a core from the workers' own)."""
    if choice.pretrained and choice.path:
        return FeatureWeights(Path(choice.path).read_bytes(), choice.seed, Path(choice.path).name)
    return FeatureWeights(None, choice.seed)


def broadcast_weights(h5: "object", weights: FeatureWeights) -> Callable[[], FeatureWeights]:
    """`weights` as a Spark worker reads them: the .h5 bytes from the broadcast `h5`, the seed and the name shipped
    with the function (not the bytes)."""
    seed, name = weights.seed, weights.name
    return lambda: FeatureWeights(h5.value, seed, name)


def build_from(weights: FeatureWeights) -> "keras.Model":
    """The feature model of shipped weights: the .h5 bytes loaded through a temporary file, or the seeded init."""
    if weights.h5 is None:
        return build_feature_model(WeightsChoice("none", "none", None, weights.seed, RANDOM_INIT))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / weights.name
        path.write_bytes(weights.h5)
        return build_feature_model(WeightsChoice("file", "file", str(path), weights.seed, "shipped .h5 weights"))


_MODELS: dict[str, "keras.Model"] = {}
_MODELS_LOCK = threading.Lock()  # held while a model is built, by cached_model or by a build_in_background thread


def _build_locked(weights_sha256: str, shipped: FeatureWeights, trace_batch: int = 0) -> "keras.Model":
    """The feature model of `shipped`, checked against its sha256, run once on a zero batch of `trace_batch` images
    when > 0, and cached; the caller holds _MODELS_LOCK."""
    if shipped.sha256 != weights_sha256:
        raise ValueError(f"feature model weights do not match their sha256 {weights_sha256}")
    model = build_from(shipped)
    if trace_batch > 0:  # Keras traces the predict function and oneDNN sets up its kernels on the first call
        model.predict_on_batch(np.zeros((trace_batch, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32))
    _MODELS[weights_sha256] = model
    return model


def cached_model(weights_sha256: str, weights: Callable[[], FeatureWeights], threads: int = 0
                 ) -> tuple["keras.Model", bool]:
    """This process's feature model for the weights (built on first use only, TensorFlow capped at `threads` when
    > 0); True when it was built now."""
    with _MODELS_LOCK:
        model = _MODELS.get(weights_sha256)
        if model is not None:
            return model, False
        shipped = weights()
        import_keras(threads)  # the first import in a Spark worker, where the jars would slow it
        return _build_locked(weights_sha256, shipped), True


def build_in_background(weights_sha256: str, weights: Callable[[], FeatureWeights], threads: int = 0,
                        trace_batch: int = 0) -> threading.Thread | None:
    """Keras imported now, then a thread that builds this process's model for the weights (as cached_model does) and
    runs it on a zero batch of `trace_batch` images; None when the model is built or a build is under way."""
    import_keras(threads)  # here, not on the thread: it swaps sys.path for the import
    if not _MODELS_LOCK.acquire(blocking=False):
        return None

    def build(shipped: FeatureWeights) -> None:
        # The lock taken above is released here, once the model is cached: a cached_model call waits for it.
        try:
            _build_locked(weights_sha256, shipped, trace_batch)
        except Exception:  # noqa: BLE001 - the next cached_model call builds again and raises it; this logs it
            traceback.print_exc()
        finally:
            _MODELS_LOCK.release()

    try:
        if weights_sha256 in _MODELS:
            _MODELS_LOCK.release()
            return None
        # the weights are read in the caller's Spark task, where its broadcasts are registered
        thread = threading.Thread(target=build, args=(weights(),), name="feature-model-build", daemon=True)
        thread.start()
    except BaseException:  # no thread took the lock over
        _MODELS_LOCK.release()
        raise
    return thread


def decode_pixels(data: bytes) -> np.ndarray:
    """Any Pillow-readable image (grayscale, RGBA on white, palette, PNG, JPEG) as a 224x224x3 uint8 RGB array."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
                rgba = image.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                rgb = Image.alpha_composite(background, rgba).convert("RGB")
            else:
                rgb = image if image.mode == "RGB" else image.convert("RGB")
            return np.asarray(rgb.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR))
    except Exception as exc:  # Pillow raises many types (UnidentifiedImageError, OSError, SyntaxError...)
        raise ImageDecodeError(f"{type(exc).__name__}: {exc}") from exc


def decode_image(data: bytes) -> np.ndarray:
    """Any Pillow-readable image as a 224x224x3 float32 RGB array (0-255)."""
    return decode_pixels(data).astype(np.float32)


def decoded_batches(contents: Sequence[bytes | None], batch_size: int) -> Iterator[tuple[list[int], np.ndarray]]:
    """The decodable images in order, `batch_size` at a time: their positions in `contents` and the batch scaled to
    [-1, 1] as MobileNetV2's preprocess_input does (only the last one short, so Keras traces one batch shape, not one
    per undecodable image)."""
    positions: list[int] = []
    batch = np.empty((batch_size, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32)
    for position, data in enumerate(contents):
        if data is None:
            continue
        try:
            pixels = decode_pixels(bytes(data))
        except ImageDecodeError:
            continue
        # x / 127.5 - 1 on each image while it is in cache (decode and scaling 0.57 ms an image; Keras'
        # preprocess_input over the stacked float batch, three passes over 19 MB, made it 0.77).
        np.divide(pixels, 127.5, out=batch[len(positions)], dtype=np.float32)
        batch[len(positions)] -= 1.0
        positions.append(position)
        if len(positions) == batch_size:
            yield positions, batch
            positions, batch = [], np.empty_like(batch)
    if positions:
        yield positions, batch[:len(positions)]


def feature_matrix(model: "keras.Model", contents: Sequence[bytes | None],
                   batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The positions in `contents` of the images that decode (ascending) and their feature vectors, one float32 row
    each."""
    positions: list[int] = []
    rows: list[np.ndarray] = []
    # Decoded a batch at a time: an Arrow batch of 10,000 images would be 6 GB of float32 arrays at once. (Decoding
    # the next batch on a thread while the model runs gained nothing in the Spark worker: TensorFlow fills the cores.)
    for batch_positions, batch in decoded_batches(contents, batch_size):
        positions.extend(batch_positions)
        rows.append(np.asarray(model.predict_on_batch(batch), dtype=np.float32))
    if not rows:
        return np.empty(0, np.int64), np.empty((0, FEATURE_SIZE), np.float32)
    return np.asarray(positions, np.int64), np.concatenate(rows)


def feature_lists(count: int, positions: np.ndarray, matrix: np.ndarray) -> pa.ListArray:
    """`count` feature lists as Spark's array<float> takes them from Arrow: row i of `matrix` at `positions[i]`, null
    elsewhere, built on the matrix's own buffer."""
    if matrix.size > np.iinfo(np.int32).max:
        raise ValueError(f"{matrix.size} features in one Arrow batch overflow its 32-bit offsets: lower "
                         "spark.sql.execution.arrow.maxRecordsPerBatch")
    present = np.zeros(count, bool)
    present[positions] = True
    offsets = np.zeros(count + 1, np.int32)
    np.cumsum(present * np.int32(matrix.shape[1]), out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(matrix.reshape(-1)), mask=pa.array(~present))


def extract_features(model: "keras.Model", contents: Sequence[bytes | None],
                     batch_size: int = 32) -> list[np.ndarray | None]:
    """Feature vectors (float32[1280]) for each image's bytes, None where the bytes do not decode."""
    out: list[np.ndarray | None] = [None] * len(contents)
    positions, matrix = feature_matrix(model, contents, batch_size)
    for position, row in zip(positions, matrix):
        out[position] = row
    return out
