"""The `image_data` wire format: JSON with a base64 PNG of one 32x32 RGB CIFAR-10 image."""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from mlassets.datasets.cifar10 import LABELS

REQUIRED_FIELDS = ("ID", "producer_id", "seq", "GroundTruth", "Data", "sent_at")
IMAGE_SHAPE = (32, 32, 3)


class BadMessage(ValueError):
    """A message that cannot be classified; `reason` goes to the dead-letter topic."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class ImageMessage:
    """One decoded image message: ids, ground truth label and the RGB pixels."""

    id: str
    producer_id: str
    seq: int
    ground_truth: str
    image: np.ndarray
    sent_at: float


def png_bytes(image: np.ndarray) -> bytes:
    """A lossless PNG of an (H, W, 3) uint8 RGB array."""
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image), mode="RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def encode_image_message(message_id: str, producer_id: str, seq: int, ground_truth: str, image: np.ndarray,
                         sent_at: float) -> tuple[bytes, bytes]:
    """The Kafka key (producer_id) and JSON value of one image message."""
    value = {
        "ID": message_id, "producer_id": producer_id, "seq": seq, "GroundTruth": ground_truth,
        "Data": base64.b64encode(png_bytes(image)).decode("ascii"), "sent_at": sent_at,
    }
    return producer_id.encode(), json.dumps(value, separators=(",", ":")).encode()


def decode_image_message(value: bytes | None) -> ImageMessage:
    """Parse and validate one message value; BadMessage says what is wrong with it."""
    if value is None:
        raise BadMessage("empty message value")
    try:
        doc: Any = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadMessage(f"invalid JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadMessage(f"expected a JSON object, got {type(doc).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in doc or doc[f] in (None, "")]
    if missing:
        raise BadMessage(f"missing field(s): {', '.join(missing)}")
    if doc["GroundTruth"] not in LABELS:
        raise BadMessage(f"unknown label {doc['GroundTruth']!r}")
    try:
        raw = base64.b64decode(doc["Data"], validate=True)
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as img:  # the wire format: no other decoder is tried
            image = np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError) as exc:
        raise BadMessage(f"undecodable image: {exc}") from exc
    if image.shape != IMAGE_SHAPE:
        raise BadMessage(f"wrong image size {image.shape[1]}x{image.shape[0]}, expected 32x32")
    try:
        seq, sent_at = int(doc["seq"]), float(doc["sent_at"])
    except (TypeError, ValueError) as exc:
        raise BadMessage(f"seq/sent_at are not numbers: {exc}") from exc
    return ImageMessage(str(doc["ID"]), str(doc["producer_id"]), seq, doc["GroundTruth"], image, sent_at)
