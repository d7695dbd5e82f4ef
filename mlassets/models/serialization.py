"""Keras models as an architecture JSON plus one npz blob of weights and extra arrays (no pickle)."""

from __future__ import annotations

import hashlib
import io
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import keras

WEIGHT_PREFIX = "weight/"
EXTRA_PREFIX = "extra/"


class ModelFormatError(ValueError):
    """Stored model bytes that cannot be turned back into the model they claim to be."""


def sha256_hex(blob: bytes) -> str:
    """The hex sha256 of a blob."""
    return hashlib.sha256(blob).hexdigest()


def model_sha256(architecture_json: str, blob: bytes) -> str:
    """The hex sha256 of what decides a stored model's predictions: its architecture JSON and its blob (weights and
    extras such as the scaler)."""
    text = architecture_json.encode("utf-8")
    digest = hashlib.sha256(len(text).to_bytes(8, "big"))  # the length keeps bytes from moving between the parts
    digest.update(text)
    digest.update(blob)
    return digest.hexdigest()


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """Named arrays as an uncompressed npz archive (no pickled objects)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.asarray(value) for name, value in arrays.items()})
    return buffer.getvalue()


def npz_arrays(blob: bytes) -> dict[str, np.ndarray]:
    """The named arrays of an npz archive; pickled objects and damaged archives are refused."""
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, KeyError, EOFError) as exc:
        raise ModelFormatError(f"blob is not a valid npz of plain arrays: {exc}") from exc


def model_to_bytes(model: "keras.Model", extras: dict[str, np.ndarray] | None = None) -> tuple[str, bytes]:
    """The model's architecture JSON and an npz blob holding its weights in order plus the extras."""
    arrays = {f"{WEIGHT_PREFIX}{i:05d}": w for i, w in enumerate(model.get_weights())}
    arrays.update({f"{EXTRA_PREFIX}{name}": value for name, value in (extras or {}).items()})
    return model.to_json(), npz_bytes(arrays)


def arrays_from_bytes(blob: bytes) -> tuple[list[np.ndarray], dict[str, np.ndarray]]:
    """The weights (in order) and extras stored in an npz blob written by model_to_bytes."""
    arrays = npz_arrays(blob)
    weights = [arrays[k] for k in sorted(k for k in arrays if k.startswith(WEIGHT_PREFIX))]
    return weights, {k[len(EXTRA_PREFIX):]: v for k, v in arrays.items() if k.startswith(EXTRA_PREFIX)}


def model_from_bytes(architecture_json: str, blob: bytes) -> tuple["keras.Model", dict[str, np.ndarray]]:
    """Rebuild a model from its JSON and set every weight strictly (count and shapes must match)."""
    import keras

    weights, extras = arrays_from_bytes(blob)
    try:
        model = keras.models.model_from_json(architecture_json)
    except Exception as exc:  # noqa: BLE001 - keras raises many types for a bad config
        raise ModelFormatError(f"architecture JSON cannot be deserialised: {exc}") from exc
    expected = [tuple(w.shape) for w in model.weights]
    actual = [tuple(w.shape) for w in weights]
    if expected != actual:
        raise ModelFormatError(
            f"stored weights do not fit the architecture: {len(actual)} arrays {actual[:4]}... "
            f"for {len(expected)} variables {expected[:4]}..."
        )
    model.set_weights(weights)
    return model, extras
