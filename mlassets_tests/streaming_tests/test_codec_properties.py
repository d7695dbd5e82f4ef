"""Property-based fuzzing of both codecs: any bytes or JSON-shaped payload gives a valid record or a BadMessage.

Every rejection must come from an explicit check (a known reason kind), never from the catch-all that turns an
unforeseen exception into "undecodable message", and every accepted image message must make a storable document.
"""

import base64
import datetime as dt
import io
import json
from types import SimpleNamespace

import bson
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mlassets.datasets.cifar10 import LABELS
from mlassets.datasets.susy import N_FEATURES
from mlassets.streaming.dead_letters import BadMessage, reason_kind
from mlassets.streaming.image_messages import (
    MAX_ID_CHARS,
    MAX_SEQ,
    REQUIRED_FIELDS,
    SENT_AT_MAX_AHEAD_S,
    SENT_AT_MIN,
    ImageMessage,
    decode_image_message,
    encode_image_message,
    png_bytes,
)
from mlassets.streaming.inference import inference_document
from mlassets.streaming.susy_messages import decode_train_message, encode_train_rows

NOW = 1_750_000_000.0
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
IMAGE_REASONS = {"empty message value", "message too large", "invalid JSON", "not a JSON object", "missing field(s)",
                 "invalid ID", "invalid producer_id", "unknown label", "invalid seq", "invalid sent_at",
                 "undecodable image", "wrong image size"}
TRAIN_REASONS = {"missing key", "invalid key", "empty value", "wrong field count", "non-numeric value",
                 "non-finite value"}

any_char = st.characters(exclude_categories=())  # lone surrogates included
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats()
                | st.text(alphabet=any_char, max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=12)


def _png(size: tuple[int, int], mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, color=7).save(buffer, format="PNG")
    return buffer.getvalue()


GOOD_PNG = png_bytes(np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8))
OTHER_PNGS = [_png((32, 32), mode) for mode in ("L", "RGBA", "P", "I;16", "1")] + [
    _png(size, "RGB") for size in ((31, 32), (1, 1), (64, 64))]


@st.composite
def png_payloads(draw: st.DrawFn) -> str:
    """Base64 of a good PNG, another size or mode, a good PNG with flipped bytes or cut short, or random bytes."""
    kind = draw(st.sampled_from(["good", "other", "flipped", "cut", "random"]))
    if kind == "random":
        return base64.b64encode(draw(st.binary(max_size=300))).decode()
    png = bytearray(GOOD_PNG if kind != "other" else draw(st.sampled_from(OTHER_PNGS)))
    if kind == "flipped":
        for index, mask in draw(st.lists(st.tuples(st.integers(0, len(png) - 1), st.integers(1, 255)),
                                         min_size=1, max_size=3)):
            png[index] ^= mask
    if kind == "cut":
        png = png[:draw(st.integers(0, len(png) - 1))]
    return base64.b64encode(bytes(png)).decode()


valid_text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=MAX_ID_CHARS)
valid_fields = {
    "ID": valid_text, "producer_id": valid_text, "seq": st.integers(0, MAX_SEQ - 1),
    "GroundTruth": st.sampled_from(LABELS), "Data": png_payloads(),
    "sent_at": st.floats(SENT_AT_MIN, NOW + SENT_AT_MAX_AHEAD_S),
}
odd_fields = {
    "ID": json_values | st.text(alphabet=any_char, min_size=1, max_size=MAX_ID_CHARS + 4),
    "producer_id": json_values | st.text(alphabet=any_char, min_size=1, max_size=8),
    "seq": json_values | st.integers(-2, 2**64) | st.floats(),
    "GroundTruth": json_values | st.text(max_size=8),
    "Data": json_values | st.text(max_size=40),
    "sent_at": json_values | st.floats() | st.floats(SENT_AT_MIN - 10, NOW + 2 * SENT_AT_MAX_AHEAD_S),
}


@st.composite
def near_valid_documents(draw: st.DrawFn) -> dict:
    """A message with valid fields (any PNG payload), then up to two fields replaced by odd values."""
    doc = {field: draw(strategy) for field, strategy in valid_fields.items()}
    for field in draw(st.lists(st.sampled_from(REQUIRED_FIELDS), max_size=2, unique=True)):
        doc[field] = draw(odd_fields[field])
    return doc


def _decodes_or_is_rejected(value: bytes | None) -> ImageMessage | None:
    """The decoded message after checking it is valid and storable, or None after checking the rejection."""
    try:
        message = decode_image_message(value, now=NOW)
    except BadMessage as exc:
        assert reason_kind(exc.reason) in IMAGE_REASONS, exc.reason
        return None
    for text in (message.id, message.producer_id):
        assert isinstance(text, str) and 0 < len(text) <= MAX_ID_CHARS
        text.encode("utf-8")
    assert type(message.seq) is int and 0 <= message.seq < MAX_SEQ
    assert message.ground_truth in LABELS
    assert isinstance(message.sent_at, float) and SENT_AT_MIN <= message.sent_at <= NOW + SENT_AT_MAX_AHEAD_S
    assert message.image.shape == (32, 32, 3) and message.image.dtype == np.uint8
    bson.encode(inference_document(SimpleNamespace(partition=0, offset=0), message, 0, 0.5, "fuzz:v1",
                                   dt.datetime.now(dt.timezone.utc)))
    return message


@FUZZ
@given(st.none() | st.binary(max_size=2000))
def test_image_codec_on_arbitrary_bytes(value: bytes | None) -> None:
    _decodes_or_is_rejected(value)


@FUZZ
@given(json_values)
def test_image_codec_on_arbitrary_json(doc: object) -> None:
    _decodes_or_is_rejected(json.dumps(doc).encode())


@FUZZ
@given(st.fixed_dictionaries({field: json_values for field in REQUIRED_FIELDS}))
def test_image_codec_on_required_fields_holding_arbitrary_json(doc: dict) -> None:
    _decodes_or_is_rejected(json.dumps(doc).encode())


@FUZZ
@given(near_valid_documents())
def test_image_codec_on_near_valid_messages(doc: dict) -> None:
    _decodes_or_is_rejected(json.dumps(doc).encode())


@FUZZ
@given(valid_fields["ID"], valid_fields["seq"], valid_fields["GroundTruth"], valid_fields["sent_at"])
def test_image_codec_round_trips_every_valid_message(message_id: str, seq: int, label: str, sent_at: float) -> None:
    image = np.frombuffer(bytes(range(256)) * 12, dtype=np.uint8).reshape(32, 32, 3)
    message = _decodes_or_is_rejected(encode_image_message(message_id, "p-1", seq, label, image, sent_at)[1])
    assert message is not None
    assert (message.id, message.seq, message.ground_truth, message.sent_at) == (message_id, seq, label, sent_at)
    np.testing.assert_array_equal(message.image, image)


def _train_decodes_or_is_rejected(key: bytes | None, value: bytes | None) -> tuple[int, np.ndarray] | None:
    try:
        label, row = decode_train_message(key, value)
    except BadMessage as exc:
        assert reason_kind(exc.reason) in TRAIN_REASONS, exc.reason
        return None
    assert label in (0, 1)
    assert row.dtype == np.float32 and row.shape == (N_FEATURES,) and np.isfinite(row).all()
    return label, row


number_texts = (st.floats().map(lambda f: repr(f).encode())
                | st.sampled_from([b"1e39", b"-1e39", b"3.4028235e38", b"3.4028236e38", b"inf", b"nan", b"1_0",
                                   b" 1 ", b"", b"0x10", b"\xff", b"1e-50"])
                | st.binary(max_size=6))
train_keys = st.none() | st.sampled_from([b"1.0", b"0.0", b"1", b" 0.0 ", b"2.0", b"nan", b"inf"]) | st.binary(
    max_size=12)


@FUZZ
@given(st.none() | st.binary(max_size=40), st.none() | st.binary(max_size=600))
def test_train_codec_on_arbitrary_bytes(key: bytes | None, value: bytes | None) -> None:
    _train_decodes_or_is_rejected(key, value)


@FUZZ
@given(train_keys, json_values)
def test_train_codec_on_arbitrary_json(key: bytes | None, doc: object) -> None:
    _train_decodes_or_is_rejected(key, json.dumps(doc).encode())


@FUZZ
@given(train_keys, st.lists(number_texts, min_size=N_FEATURES - 1, max_size=N_FEATURES + 1))
def test_train_codec_on_near_valid_rows(key: bytes | None, fields: list[bytes]) -> None:
    _train_decodes_or_is_rejected(key, b",".join(fields))


@FUZZ
@given(st.integers(0, 1), st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False),
                                   min_size=N_FEATURES, max_size=N_FEATURES))
def test_train_codec_round_trips_every_finite_float32_row(label: int, values: list[float]) -> None:
    row = np.asarray(values, dtype=np.float32)
    ((key, value),) = encode_train_rows(np.asarray([label]), row[None, :])
    decoded = _train_decodes_or_is_rejected(key, value)
    assert decoded is not None and decoded[0] == label
    np.testing.assert_array_equal(decoded[1], row)
