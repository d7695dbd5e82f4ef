"""The `image_data` wire format: JSON with a base64 PNG of one 32x32 RGB CIFAR-10 image."""

from __future__ import annotations

import base64
import io
import json
import struct
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyspng
from PIL import Image

from mlassets.datasets.cifar10 import LABELS
from mlassets.streaming.dead_letters import BadMessage, error_text, rejects_any_error

__all__ = ["BadMessage", "ImageMessage", "decode_image_message", "encode_image_message", "png_bytes"]

REQUIRED_FIELDS = ("ID", "producer_id", "seq", "GroundTruth", "Data", "sent_at")
IMAGE_SHAPE = (32, 32, 3)
MAX_MESSAGE_BYTES = 2**20  # a real message is about 4 KiB
MAX_ID_CHARS = 256
MAX_SEQ = 2**63  # exclusive: seq is stored as a BSON int64
SENT_AT_MIN = 946_684_800.0  # 2000-01-01T00:00:00Z
SENT_AT_MAX_AHEAD_S = 86_400.0  # a producer's clock may run ahead of the drain's, not by more than a day
_LABELS = frozenset(LABELS)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The IHDR chunk of the wire format: length 13, 32x32, 8 bits per channel, colour type 2 (RGB), deflate, adaptive
# filtering, no interlace.
_WIRE_IHDR = struct.pack(">I4sIIBBBBB", 13, b"IHDR", IMAGE_SHAPE[1], IMAGE_SHAPE[0], 8, 2, 0, 0, 0)


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


@rejects_any_error
def decode_image_message(value: bytes | None, now: float | None = None) -> ImageMessage:
    """Parse and validate every field of one message value (sent_at against `now`, default the clock).

    BadMessage says what is wrong; any other exception a hostile value provokes becomes a BadMessage naming it.
    `seq` is a JSON integer, or a float with an integral value (some encoders write 7.0), in [0, 2**63).
    """
    if value is None:
        raise BadMessage("empty message value")
    if len(value) > MAX_MESSAGE_BYTES:
        raise BadMessage(f"message too large: {len(value)} bytes, the limit is {MAX_MESSAGE_BYTES}")
    try:
        doc: Any = json.loads(value)
    except Exception as exc:  # noqa: BLE001 - deep nesting raises RecursionError, not JSONDecodeError
        raise BadMessage(f"invalid JSON: {error_text(exc)}") from exc
    if not isinstance(doc, dict):
        raise BadMessage(f"not a JSON object: got {type(doc).__name__}")
    missing = [f for f in REQUIRED_FIELDS if f not in doc or doc[f] is None or doc[f] == ""]
    if missing:
        raise BadMessage(f"missing field(s): {', '.join(missing)}")
    message_id, producer_id = _identifier(doc, "ID"), _identifier(doc, "producer_id")
    label = doc["GroundTruth"]
    if not isinstance(label, str) or label not in _LABELS:
        raise BadMessage(f"unknown label: {label!r:.60}")
    seq = _seq(doc["seq"])
    sent_at = _sent_at(doc["sent_at"], time.time() if now is None else now)
    return ImageMessage(message_id, producer_id, seq, label, _pixels(doc["Data"]), sent_at)


def _identifier(doc: dict[str, Any], field: str) -> str:
    value = doc[field]
    if not isinstance(value, str) or len(value) > MAX_ID_CHARS:
        raise BadMessage(f"invalid {field}: expected a string of 1 to {MAX_ID_CHARS} characters, got "
                         f"{type(value).__name__} {value!r:.40}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate from a JSON \ud800 escape cannot be stored
        raise BadMessage(f"invalid {field}: not encodable as UTF-8 ({exc.reason})") from exc
    return value


def _seq(value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if type(value) is not int or not 0 <= value < MAX_SEQ:  # type(): a JSON true is no sequence number
        raise BadMessage(f"invalid seq: expected an integer in [0, 2**63), got {value!r:.40}")
    return value


def _sent_at(value: Any, now: float) -> float:
    if type(value) not in (int, float) or not SENT_AT_MIN <= value <= now + SENT_AT_MAX_AHEAD_S:  # NaN fails too
        raise BadMessage(f"invalid sent_at: expected epoch seconds from 2000-01-01 to a day from now, got "
                         f"{value!r:.40}")
    return float(value)


def _pixels(data: Any) -> np.ndarray:
    if not isinstance(data, str):
        raise BadMessage(f"undecodable image: Data is a {type(data).__name__}, expected a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
        if _is_plain_wire_png(raw):
            return _rgb(pyspng.load(raw))  # libspng: a fifth of Pillow's time per image, CRCs checked
        with Image.open(io.BytesIO(raw), formats=["PNG"]) as img:  # the wire format: no other decoder is tried
            if img.size != (IMAGE_SHAPE[1], IMAGE_SHAPE[0]):  # from the IHDR header, before any pixel is decoded
                raise BadMessage(f"wrong image size: {img.size[0]}x{img.size[1]}, expected 32x32")
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except BadMessage:
        raise
    except Exception as exc:  # noqa: BLE001 - PIL raises SyntaxError, DecompressionBombError, zlib errors...
        raise BadMessage(f"undecodable image: {error_text(exc)}") from exc


def _is_plain_wire_png(raw: bytes) -> bool:
    """True for a PNG with the wire format's IHDR and no chunk but IDATs before IEND, as the producers write them;
    every other file (other sizes or modes, ancillary chunks, anything malformed) takes Pillow's general path."""
    if raw[:8] != PNG_SIGNATURE or raw[8:29] != _WIRE_IHDR:
        return False
    position = 33  # signature, then the IHDR chunk: length, type, 13 bytes of data, CRC
    while position + 12 <= len(raw):
        length, kind = struct.unpack_from(">I4s", raw, position)
        if kind == b"IEND":
            return length == 0 and position + 12 == len(raw)
        if kind != b"IDAT":
            return False
        position += 12 + length
    return False


def _rgb(pixels: np.ndarray) -> np.ndarray:
    """libspng's output, checked to be the wire format's shape and type."""
    if pixels.shape != IMAGE_SHAPE or pixels.dtype != np.uint8:
        raise BadMessage(f"undecodable image: decoded to {pixels.dtype} {pixels.shape}, expected uint8 {IMAGE_SHAPE}")
    return pixels
