"""The MobileNetV2 feature model: explicit weight choice, decoding of every image mode, the per-process model cache."""

from pathlib import Path

import h5py
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from mlassets.models import mobilenet_features as mf
from mlassets.models.serialization import model_to_bytes, sha256_hex
from mlassets_tests.assets_tests.fruits_tests.test_images import encode, generated_fruit


@pytest.fixture
def keras_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    return tmp_path / "keras"


def weights_sha(model) -> str:
    """The sha256 of a model's weights, in order."""
    return sha256_hex(model_to_bytes(model)[1])


@pytest.fixture(scope="module")
def seeded() -> tuple:
    """The seed-0 random model and the sha256 of its weights."""
    model = mf.build_feature_model(mf.resolve_weights("none", 0))
    return model, weights_sha(model)


def test_imagenet_without_the_cached_file_fails_clearly(keras_home: Path) -> None:
    with pytest.raises(mf.WeightsUnavailableError) as error:
        mf.resolve_weights("imagenet")
    message = str(error.value)
    assert mf.IMAGENET_NO_TOP_FILE in message and str(keras_home / "models") in message and "weights: none" in message


def test_auto_without_imagenet_is_random_and_says_so(keras_home: Path) -> None:
    choice = mf.resolve_weights("auto", seed=3)
    assert (choice.source, choice.pretrained, choice.seed) == ("none", False, 3)
    assert "RANDOM" in choice.note and mf.IMAGENET_NO_TOP_FILE in choice.note


@pytest.mark.parametrize("weights, error", [("/nowhere/w.h5", mf.WeightsUnavailableError), ("resnet", ValueError)])
def test_other_weight_settings_fail(weights: str, error: type) -> None:
    with pytest.raises(error):
        mf.resolve_weights(weights)


def test_weights_from_the_keras_cache_and_from_a_path(keras_home: Path, seeded: tuple) -> None:
    from keras.src.legacy.saving.legacy_h5_format import save_weights_to_hdf5_group

    model, sha = seeded
    cached = keras_home / "models" / mf.IMAGENET_NO_TOP_FILE
    cached.parent.mkdir(parents=True)
    with h5py.File(cached, "w") as file:  # the legacy layout Keras downloads the ImageNet weights in
        save_weights_to_hdf5_group(file, model)
    for setting in ("imagenet", "auto", str(cached)):
        choice = mf.resolve_weights(setting)
        assert choice.pretrained and Path(choice.path) == cached
    loaded = mf.build_feature_model(mf.resolve_weights("imagenet"))
    assert weights_sha(loaded) == sha
    # What the workers get: the file's bytes, loaded through a file of their own.
    shipped = mf.feature_weights(mf.resolve_weights("imagenet"))
    assert shipped.h5 == cached.read_bytes() and shipped.sha256 == sha256_hex(cached.read_bytes())
    assert weights_sha(mf.build_from(shipped)) == sha
    # A Keras 3 `.weights.h5` file keeps its name on the workers, so Keras picks the same loader there.
    modern = keras_home / "mine.weights.h5"
    model.save_weights(modern)
    shipped = mf.feature_weights(mf.resolve_weights(str(modern)))
    assert shipped.name == "mine.weights.h5" and weights_sha(mf.build_from(shipped)) == sha


def test_random_init_is_seeded_and_not_degenerate(seeded: tuple) -> None:
    model, sha = seeded
    again = mf.build_feature_model(mf.resolve_weights("none", 0))
    assert weights_sha(again) == sha
    other = mf.build_feature_model(mf.resolve_weights("none", 1))
    assert weights_sha(other) != sha
    # What the workers get: the seed alone, and every worker builds the same weights from it.
    shipped = mf.feature_weights(mf.resolve_weights("none", 0))
    assert shipped.h5 is None and shipped.sha256 != mf.feature_weights(mf.resolve_weights("none", 1)).sha256
    assert weights_sha(mf.build_from(shipped)) == sha
    features = mf.extract_features(model, [encode(generated_fruit(i), "JPEG") for i in range(4)])
    stacked = np.stack(features)
    assert stacked.shape == (4, mf.FEATURE_SIZE) and stacked.max() > 0.1 and stacked.std(axis=0).mean() > 1e-3


@pytest.mark.parametrize("mode, kind", [("RGB", "JPEG"), ("L", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("LA", "PNG")])
def test_decode_image_gives_224_rgb_for_every_mode(mode: str, kind: str) -> None:
    array = mf.decode_image(encode(generated_fruit(2).convert(mode), kind))
    assert array.shape == (224, 224, 3) and array.dtype == np.float32 and 0 <= array.min() <= array.max() <= 255


def test_transparent_pixels_become_white() -> None:
    image = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    assert (mf.decode_image(encode(image, "PNG")) == 255).all()


def test_undecodable_bytes_raise_and_become_null_features(seeded: tuple) -> None:
    model = seeded[0]
    jpeg = encode(generated_fruit(5), "JPEG")
    with pytest.raises(mf.ImageDecodeError):
        mf.decode_image(jpeg[:200])
    contents = [jpeg, b"text", None, jpeg[:200], encode(generated_fruit(6).convert("L"), "JPEG")]
    small = mf.extract_features(model, contents, batch_size=1)
    large = mf.extract_features(model, contents, batch_size=8)
    assert [f is None for f in small] == [False, True, True, True, False]
    for a, b in zip(small, large):
        assert (a is None and b is None) or (a.shape == (mf.FEATURE_SIZE,) and np.allclose(a, b, atol=1e-4))


def test_batches_are_scaled_exactly_as_keras_preprocess_input() -> None:
    from keras.applications.mobilenet_v2 import preprocess_input

    contents = [encode(generated_fruit(i).convert(mode), kind) for i, (mode, kind) in
                enumerate([("RGB", "JPEG"), ("L", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("RGB", "PNG")])]
    expected = preprocess_input(np.stack([mf.decode_image(c) for c in contents]))
    batches = [batch for _, batch in mf.decoded_batches(contents, 2)]
    assert [len(b) for b in batches] == [2, 2, 1] and all(b.dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(np.concatenate(batches), expected)
    assert -1.0 <= expected.min() < expected.max() <= 1.0


def test_batches_are_full_whatever_fails_to_decode_and_the_model_sees_each_once() -> None:
    jpeg = encode(generated_fruit(1), "JPEG")
    contents = [jpeg, b"text", jpeg, None, jpeg, jpeg[:200], jpeg, jpeg]
    batches = list(mf.decoded_batches(contents, 2))
    assert [positions for positions, _ in batches] == [[0, 2], [4, 6], [7]]
    assert [batch.shape for _, batch in batches] == [(2, 224, 224, 3), (2, 224, 224, 3), (1, 224, 224, 3)]

    class Recording:
        """A stand-in model that records the batches it is given and returns their first pixel as the feature."""

        def __init__(self) -> None:
            self.sizes: list[int] = []

        def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
            self.sizes.append(len(batch))
            return batch.reshape(len(batch), -1)[:, :mf.FEATURE_SIZE]

    model = Recording()
    features = mf.extract_features(model, contents, batch_size=2)
    assert model.sizes == [2, 2, 1] and [f is None for f in features] == [False, True, False, True, False, True,
                                                                          False, False]
    expected = batches[0][1].reshape(2, -1)[0, :mf.FEATURE_SIZE]
    assert all(np.array_equal(features[i], expected) for i in (0, 2, 4, 6, 7))


def test_a_failing_model_call_is_raised_not_swallowed() -> None:
    class Broken:
        def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        mf.extract_features(Broken(), [encode(generated_fruit(1), "JPEG")] * 3, batch_size=2)


def test_model_is_built_once_per_process_and_weights_are_checked(seeded: tuple) -> None:
    _, sha = seeded
    shipped = mf.FeatureWeights(None, 0)
    calls = []

    def fetch() -> mf.FeatureWeights:
        calls.append(1)
        return shipped

    mf._MODELS.pop(shipped.sha256, None)
    first, built = mf.cached_model(shipped.sha256, fetch)
    second, built_again = mf.cached_model(shipped.sha256, fetch)
    assert built and not built_again and first is second and len(calls) == 1 and weights_sha(first) == sha
    with pytest.raises(ValueError, match="sha256"):
        mf.cached_model("0" * 64, fetch)
    with pytest.raises(ValueError, match="sha256"):  # .h5 bytes that are not the ones named
        mf.cached_model(sha256_hex(b"the real file"), lambda: mf.FeatureWeights(b"a changed file", 0))


def test_a_background_build_is_the_model_later_calls_get(seeded: tuple) -> None:
    _, sha = seeded
    shipped = mf.FeatureWeights(None, 0)
    mf._MODELS.pop(shipped.sha256, None)
    thread = mf.build_in_background(shipped.sha256, lambda: shipped, trace_batch=2)
    assert thread is not None
    assert mf.build_in_background(shipped.sha256, lambda: shipped, trace_batch=2) is None  # being built: no second

    def never() -> mf.FeatureWeights:
        raise AssertionError("the model being built in the background was built again")

    model, built = mf.cached_model(shipped.sha256, never)  # waits for the thread, no join first
    assert not built and weights_sha(model) == sha
    assert model.predict_function is not None  # traced on the zero batch
    assert mf.build_in_background(shipped.sha256, lambda: shipped) is None  # built: nothing to start
    thread.join(timeout=120)


def test_a_failed_background_build_is_logged_leaves_no_model_and_is_retried(capsys: pytest.CaptureFixture) -> None:
    broken = mf.FeatureWeights(b"these bytes are not an .h5 file", 0)
    thread = mf.build_in_background(broken.sha256, lambda: broken)
    assert thread is not None
    thread.join(timeout=120)
    assert "file signature not found" in capsys.readouterr().err  # h5py's words, in the worker's log
    assert broken.sha256 not in mf._MODELS
    with pytest.raises(OSError, match="file signature not found"):  # the UDF's own call raises it
        mf.cached_model(broken.sha256, lambda: broken)
    again = mf.build_in_background(broken.sha256, lambda: broken)
    assert again is not None
    again.join(timeout=120)


@pytest.mark.parametrize("master, parallelism, partitions, expected", [
    ("local[*]", 2, 0, 1), ("local[2]", 2, 4, 4), ("spark://head:7077", 8, 0, 8), ("spark://head:7077", 2, 0, 3),
    ("yarn", 4, 1, 1)])
def test_feature_partitions(master: str, parallelism: int, partitions: int, expected: int) -> None:
    from mlassets.assets.fruits.features import FruitFeaturesConfig, feature_partitions

    config = FruitFeaturesConfig(partitions=partitions, images_per_partition=1000)
    assert feature_partitions(config, master, parallelism, 2500) == expected


def test_summary_flags_missing_wrong_size_and_non_finite_features(spark) -> None:
    from pyspark.sql.types import ArrayType, FloatType, StringType, StructField, StructType

    from mlassets.assets.fruits.features import summarise

    nan, inf = float("nan"), float("inf")
    good = [0.5] * mf.FEATURE_SIZE
    rows = {
        "good": good,
        "nan_inside": good[:7] + [nan] + good[8:],
        "nan_only": [nan] * mf.FEATURE_SIZE,
        "plus_inf": good[:-1] + [inf],
        "minus_inf": [-inf] + good[1:],
        "nan_and_inf": [nan, -inf] + good[2:],
        "short": good[:-1],
        "empty": [],
        "missing": None,
    }
    schema = StructType([StructField("path", StringType()), StructField("label", StringType()),
                         StructField("features", ArrayType(FloatType()))])
    frame = spark.createDataFrame([(path, "fruit", features) for path, features in rows.items()], schema)
    summary = summarise(frame).set_index("path")

    oracle = {path: not np.isfinite(features).all() for path, features in rows.items() if features is not None}
    present = summary[~summary["missing"]]
    assert present["not_finite"].to_dict() == oracle
    assert summary["missing"].to_dict() == {path: features is None for path, features in rows.items()}
    assert present["wrong_size"].to_dict() == {path: len(features) != mf.FEATURE_SIZE
                                               for path, features in rows.items() if features is not None}
    assert summary.loc["good", "min"] == summary.loc["good", "max"] == 0.5
    assert summary.loc["minus_inf", "min"] == -inf and summary.loc["plus_inf", "max"] == inf


def test_feature_lists_put_each_row_at_its_position_and_null_elsewhere() -> None:
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((3, 4)).astype(np.float32)
    lists = mf.feature_lists(6, np.array([0, 2, 5]), matrix)
    assert lists.type == pa.list_(pa.float32()) and len(lists) == 6
    assert lists.null_count == 3 and [v is None for v in lists.to_pylist()] == [False, True, False, True, True, False]
    for position, row in zip((0, 2, 5), matrix):
        np.testing.assert_array_equal(np.asarray(lists[position].values), row)
    assert mf.feature_lists(2, np.empty(0, np.int64), np.empty((0, 4), np.float32)).null_count == 2


def test_feature_lists_refuse_a_batch_their_offsets_cannot_hold() -> None:
    huge = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(2**21, 2**10), strides=(0, 0))
    with pytest.raises(ValueError, match="maxRecordsPerBatch"):
        mf.feature_lists(2**21, np.arange(2**21), huge)


def test_a_batch_where_nothing_decodes_is_all_null_and_never_reaches_the_model() -> None:
    class Untouchable:
        def predict_on_batch(self, batch: np.ndarray) -> np.ndarray:
            raise AssertionError("the model was called without an image")

    positions, matrix = mf.feature_matrix(Untouchable(), [b"text", None, b""], batch_size=2)
    assert positions.shape == (0,) and matrix.shape == (0, mf.FEATURE_SIZE)
    lists = mf.feature_lists(3, positions, matrix)
    assert lists.to_pylist() == [None, None, None]
