"""The image message codec: lossless round trip and one clear reason per kind of bad message, poison pills included."""

import base64
import io
import json
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from mlassets.streaming import image_messages
from mlassets.streaming.image_messages import (
    MAX_MESSAGE_BYTES,
    BadMessage,
    decode_image_message,
    encode_image_message,
    png_bytes,
)

NOW = 1_750_000_000.0


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)


def test_round_trip_is_lossless_and_rgb() -> None:
    image = _image()
    image[0, 0] = (255, 0, 0)  # pure red stays red: no swapped channels
    key, value = encode_image_message("id-1", "producer-2", 7, "cat", image, 1700000000.5)
    assert key == b"producer-2"
    message = decode_image_message(value)
    assert (message.id, message.producer_id, message.seq, message.ground_truth) == ("id-1", "producer-2", 7, "cat")
    assert message.sent_at == 1700000000.5
    np.testing.assert_array_equal(message.image, image)
    assert tuple(message.image[0, 0]) == (255, 0, 0)


def _doc(**changes: object) -> dict:
    doc = json.loads(encode_image_message("id", "p", 0, "dog", _image(), NOW - 60)[1])
    doc.update(changes)
    return {k: v for k, v in doc.items() if v is not ...}


def _value(**changes: object) -> bytes:
    return json.dumps(_doc(**changes)).encode()


def _raw(field: str, json_text: str) -> bytes:
    """A message whose `field` is the given JSON text verbatim (1e999, lone surrogates: what json.dumps never writes)."""
    doc = _doc(**{field: "__RAW__"})
    return json.dumps(doc).replace('"__RAW__"', json_text).encode()


def _padded(size: int) -> bytes:
    """A good message padded with JSON whitespace to `size` bytes."""
    value = _value()
    return value + b" " * (size - len(value))


def _png(size: tuple[int, int], mode: str = "RGB", image_format: str = "PNG") -> str:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format=image_format)
    return base64.b64encode(buffer.getvalue()).decode()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_claiming(width: int, height: int) -> str:
    """A real 32x32 PNG whose IHDR (with a valid CRC) claims another size: only the header says so."""
    png = png_bytes(_image())
    header = _chunk(b"IHDR", struct.pack(">II", width, height) + png[24:29])
    return base64.b64encode(png[:8] + header + png[33:]).decode()


def _png_with_broken_chunk() -> str:
    """A 32x32 PNG with an APNG frame-data chunk out of sequence: PIL raises SyntaxError while loading it."""
    png = png_bytes(_image())
    return base64.b64encode(png[:-12] + _chunk(b"fdAT", b"garbage") + png[-12:]).decode()


# The poison pills of issue 14: each one used to raise something other than BadMessage (stopping the drain for good),
# or to pass decode and then fail the whole batch at the Mongo write. test_inference_loop sends them through a drain.
POISON_PILLS: list[tuple[bytes, str]] = [
    (_value(Data=12345), "undecodable image: Data is a int, expected a base64 string"),
    (_value(Data=[1, 2]), "undecodable image: Data is a list"),
    (b"[" * 100_000, "invalid JSON: RecursionError"),
    (_value(Data=_png_claiming(20_000, 20_000)), "undecodable image: DecompressionBombError"),
    (_value(Data=_png_claiming(4000, 4000)), "wrong image size: 4000x4000"),  # refused from the header alone
    (_value(Data=_png_with_broken_chunk()), "undecodable image: SyntaxError"),
    (_raw("seq", "1e999"), "invalid seq: expected an integer in [0, 2**63), got inf"),
    (_value(seq=10**30), "invalid seq"),
    (_value(seq=2**63), "invalid seq"),
    (_value(seq=-1), "invalid seq"),
    (_value(seq=True), "invalid seq"),
    (_value(seq=7.5), "invalid seq"),
    (_value(seq="7"), "invalid seq"),
    (_raw("sent_at", "Infinity"), "invalid sent_at"),
    (_raw("sent_at", "NaN"), "invalid sent_at"),
    (_value(sent_at=1e20), "invalid sent_at"),
    (_value(sent_at=-1e12), "invalid sent_at"),
    (_value(sent_at=10**400), "invalid sent_at"),
    (_value(sent_at="yesterday"), "invalid sent_at"),
    (_value(sent_at=False), "invalid sent_at"),
    (_raw("ID", '"a\\ud800b"'), "invalid ID: not encodable as UTF-8 (surrogates not allowed)"),
    (_raw("producer_id", '"\\udfff"'), "invalid producer_id: not encodable as UTF-8"),
    (_value(ID={"a": 1}), "invalid ID: expected a string of 1 to 256 characters, got dict"),
    (_value(ID=12), "invalid ID: expected a string"),
    (_value(ID="x" * 257), "invalid ID: expected a string of 1 to 256 characters, got str"),
]


@pytest.mark.parametrize(("value", "reason"), [
    (b"{not json", "invalid JSON: JSONDecodeError"),
    (b"[1, 2]", "not a JSON object: got list"),
    (_value(producer_id=...), "missing field(s): producer_id"),
    (_value(GroundTruth="unicorn"), "unknown label: 'unicorn'"),
    (_value(GroundTruth=["cat"]), "unknown label: ['cat']"),
    (_value(Data="!!!notbase64"), "undecodable image: Error"),
    (_value(Data=base64.b64encode(b"GIF89a-no").decode()), "undecodable image: UnidentifiedImageError"),
    (_value(Data=_png((64, 64))), "wrong image size: 64x64"),
    (_value(Data=_png((32, 32), image_format="JPEG")), "undecodable image"),  # the wire format is PNG
    (None, "empty message value"),
    *POISON_PILLS,
    (_padded(MAX_MESSAGE_BYTES + 1), f"message too large: {MAX_MESSAGE_BYTES + 1} bytes"),
])
def test_bad_messages_have_a_reason(value: bytes, reason: str) -> None:
    with pytest.raises(BadMessage) as err:
        decode_image_message(value, now=NOW)
    assert err.value.reason.startswith(reason)


def test_fields_at_their_limits_decode() -> None:
    message = decode_image_message(_value(ID="é" * 256, seq=2**63 - 1, sent_at=NOW + 86_400), now=NOW)
    assert (message.id, message.seq, message.sent_at) == ("é" * 256, 2**63 - 1, NOW + 86_400)
    assert decode_image_message(_value(seq=7.0, sent_at=946_684_800), now=NOW).seq == 7  # an integral float
    assert decode_image_message(_padded(MAX_MESSAGE_BYTES), now=NOW).id == "id"
    with pytest.raises(BadMessage, match="invalid sent_at"):
        decode_image_message(_value(sent_at=NOW + 86_401), now=NOW)
    with pytest.raises(BadMessage, match="invalid sent_at"):
        decode_image_message(_value(sent_at=946_684_799.9), now=NOW)


def test_sent_at_is_checked_against_the_clock_by_default() -> None:
    assert decode_image_message(_value(sent_at=time.time())).sent_at > NOW
    with pytest.raises(BadMessage, match="invalid sent_at"):
        decode_image_message(_value(sent_at=time.time() + 2 * 86_400))


def test_grayscale_png_is_converted_to_rgb() -> None:
    message = decode_image_message(_value(Data=_png((32, 32), mode="L")), now=NOW)
    assert message.image.shape == (32, 32, 3)


def _idat_replaced(png: bytes, data: bytes) -> bytes:
    """A copy of a one-IDAT PNG whose IDAT data is `data` (with a valid CRC), the rest unchanged."""
    length = struct.unpack(">I", png[33:37])[0]
    assert png[37:41] == b"IDAT" and png[45 + length:53 + length] == b"\x00\x00\x00\x00IEND"
    return png[:33] + _chunk(b"IDAT", data) + png[45 + length:]


def test_wire_pngs_take_libspng_and_decode_as_pillow_does() -> None:
    for seed in range(5):
        image = _image(seed)
        png = png_bytes(image)
        assert image_messages._is_plain_wire_png(png)
        with Image.open(io.BytesIO(png)) as pillow:
            np.testing.assert_array_equal(np.asarray(pillow), image)
        message = decode_image_message(encode_image_message("i", "p", seed, "cat", image, NOW)[1], now=NOW)
        np.testing.assert_array_equal(message.image, image)


def test_other_pngs_take_pillows_path() -> None:
    image = _image(3)
    png = png_bytes(image)
    with_text = png[:33] + _chunk(b"tEXt", b"Comment\x00from a camera") + png[33:]
    rgba = base64.b64decode(_png((32, 32), mode="RGBA"))
    for other in (with_text, rgba, base64.b64decode(_png((32, 32), mode="L")), png + b"trailing"):
        assert not image_messages._is_plain_wire_png(other)
    doc = _doc(Data=base64.b64encode(with_text).decode())
    np.testing.assert_array_equal(decode_image_message(json.dumps(doc).encode(), now=NOW).image, image)


@pytest.mark.parametrize("idat", [
    b"not zlib at all",
    zlib.compress(b"\x00" * 100),  # a valid stream that holds too few rows
    zlib.compress(b"\x07" + b"\x00" * 96) * 32,  # filter type 7 does not exist
])
def test_a_wire_png_with_bad_image_data_is_a_dead_letter(idat: bytes) -> None:
    png = _idat_replaced(png_bytes(_image()), idat)
    assert image_messages._is_plain_wire_png(png)  # the header and chunk list are the wire format's: libspng decodes
    with pytest.raises(BadMessage) as err:
        decode_image_message(_value(Data=base64.b64encode(png).decode()), now=NOW)
    assert err.value.reason.startswith("undecodable image")
