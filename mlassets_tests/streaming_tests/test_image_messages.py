"""The image message codec: lossless round trip and one clear reason per kind of bad message."""

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image

from mlassets.streaming.image_messages import BadMessage, decode_image_message, encode_image_message


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def test_round_trip_is_lossless_and_rgb() -> None:
    image = _image()
    image[0, 0] = (255, 0, 0)  # pure red stays red: no swapped channels
    key, value = encode_image_message("id-1", "producer-2", 7, "cat", image, 1700000000.5)
    assert key == b"producer-2"
    message = decode_image_message(value)
    assert (message.id, message.producer_id, message.seq, message.ground_truth) == ("id-1", "producer-2", 7, "cat")
    np.testing.assert_array_equal(message.image, image)
    assert tuple(message.image[0, 0]) == (255, 0, 0)


def _value(**changes: object) -> bytes:
    doc = json.loads(encode_image_message("id", "p", 0, "dog", _image(), 1.0)[1])
    doc.update(changes)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def _png(size: tuple[int, int], mode: str = "RGB", image_format: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=image_format)
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize(("value", "reason"), [
    (b"{not json", "invalid JSON"),
    (b"[1, 2]", "expected a JSON object"),
    (_value(producer_id=...), "missing field(s): producer_id"),
    (_value(GroundTruth="unicorn"), "unknown label 'unicorn'"),
    (_value(Data="!!!notbase64"), "undecodable image"),
    (_value(Data=base64.b64encode(b"GIF89a-no").decode()), "undecodable image"),
    (_value(Data=_png((64, 64))), "wrong image size 64x64"),
    (_value(Data=_png((32, 32), image_format="JPEG")), "undecodable image"),  # the wire format is PNG
    (None, "empty message value"),
])
def test_bad_messages_have_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(BadMessage) as err:
        decode_image_message(value)
    assert err.value.reason.startswith(reason)


def test_grayscale_png_is_converted_to_rgb() -> None:
    message = decode_image_message(_value(Data=_png((32, 32), mode="L")))
    assert message.image.shape == (32, 32, 3)
