"""fruit_images: real Fruits-360 JPEGs (or generated ones) plus grayscale, RGBA, PNG, truncated and non-image files."""

import io
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from dagster import build_asset_context
from PIL import Image

from mlassets.assets.fruits.images import FruitImagesConfig, fruit_images, select_files
from mlassets.datasets.fruits360 import inspect_image
from mlassets.resources import DatasetsResource, LakeResource
from mlassets.paths import sample_data_dir

GOOD_EXTRAS = {"gray.jpg", "rgba.png", "palette.png"}
BAD_FILES = {"truncated.jpg": "corrupt or truncated", "notes.txt": "not an image", "empty.jpg": "empty file",
             "fake.jpg": "not an image", "anim.gif": "unsupported image format GIF"}


def encode(image: Image.Image, kind: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=kind)
    return buffer.getvalue()


def generated_fruit(seed: int) -> Image.Image:
    """A 100x100 RGB picture of a coloured disc on white, the class's colour from the seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:100, :100]
    pixels = np.full((100, 100, 3), 255, dtype=np.uint8)
    pixels[(yy - 50) ** 2 + (xx - 50) ** 2 < (25 + rng.integers(0, 15)) ** 2] = rng.integers(0, 200, size=3)
    return Image.fromarray(pixels, "RGB")


def build_source(root: Path, classes: int = 3, per_class: int = 3) -> dict[str, int]:
    """Class folders with real Fruits-360 JPEGs when ../shared/data has them (else generated ones) and odd files.

    The first class also gets a grayscale JPEG, an RGBA PNG and a palette PNG (all accepted); the second class gets
    a truncated JPEG, a text file, an empty file, text named .jpg and a GIF (all quarantined). Returns the number
    of accepted images per class.
    """
    shared = sample_data_dir() / "fruits360" / "Test"
    counts = {}
    if shared.is_dir():
        for class_dir in sorted(p for p in shared.iterdir() if p.is_dir())[:classes]:
            target = root / class_dir.name
            target.mkdir(parents=True)
            for path in sorted(class_dir.iterdir())[:per_class]:
                shutil.copyfile(path, target / path.name)
            counts[class_dir.name] = per_class
    else:
        for c in range(classes):
            target = root / f"Generated {c}"
            target.mkdir(parents=True)
            for i in range(per_class):
                (target / f"{i}_100.jpg").write_bytes(encode(generated_fruit(c * 100 + i // 2), "JPEG"))
            counts[target.name] = per_class
    first, second = sorted(counts)[:2]
    colour = generated_fruit(7)
    (root / first / "gray.jpg").write_bytes(encode(colour.convert("L"), "JPEG"))
    rgba = colour.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.asarray(colour.convert("L")) < 250, 255, 0).astype(np.uint8)))
    (root / first / "rgba.png").write_bytes(encode(rgba, "PNG"))
    (root / first / "palette.png").write_bytes(encode(colour.convert("P"), "PNG"))
    counts[first] += len(GOOD_EXTRAS)
    jpeg = encode(colour, "JPEG")
    (root / second / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / second / "notes.txt").write_text("not a fruit\n")
    (root / second / "empty.jpg").write_bytes(b"")
    (root / second / "fake.jpg").write_text("<html>an error page saved as a jpg</html>")
    (root / second / "anim.gif").write_bytes(encode(colour, "GIF"))
    return counts


@pytest.mark.parametrize("name, reason", [
    ("jpeg", None), ("gray", None), ("rgba_png", None),
    ("truncated", "corrupt or truncated image"), ("text", "not an image"), ("empty", "empty file"),
    ("gif", "unsupported image format GIF"),
])
def test_inspect_image(name: str, reason: str | None) -> None:
    colour = generated_fruit(1)
    jpeg = encode(colour, "JPEG")
    data = {"jpeg": jpeg, "gray": encode(colour.convert("L"), "JPEG"), "rgba_png": encode(colour.convert("RGBA"), "PNG"),
            "truncated": jpeg[: len(jpeg) // 2], "text": b"hello", "empty": b"", "gif": encode(colour, "GIF")}[name]
    info, why = inspect_image(data)
    if reason is None:
        assert why is None and info["width"] == 100 and info["format"] in {"JPEG", "PNG"}
    else:
        assert info is None and why.startswith(reason)


def test_select_files_limits_classes_and_files_per_class() -> None:
    files = pd.DataFrame({"path": [f"/r/{c}/{i}.jpg" for c in "BAC" for i in range(4)],
                          "label": [c for c in "BAC" for _ in range(4)], "bytes": 1})
    picked = select_files(files, max_images_per_class=2, max_classes=2)
    assert picked["path"].tolist() == ["/r/A/0.jpg", "/r/A/1.jpg", "/r/B/0.jpg", "/r/B/1.jpg"]
    assert len(select_files(files, None, None)) == 12


def test_fruit_images_quarantines_bad_files_and_lays_out_the_lake(tmp_path: Path) -> None:
    counts = build_source(tmp_path / "source")
    lake = LakeResource(root=str(tmp_path / "lake"))
    lake.write_bytes(b"stale", "fruit_images", "images", "Old class", "x.jpg")
    result = fruit_images(build_asset_context(), FruitImagesConfig(source=str(tmp_path / "source"),
                                                                   max_images_per_class=None),
                          DatasetsResource(data_dir=str(tmp_path / "unused")), lake)
    images = tmp_path / "lake" / "fruit_images" / "images"
    assert {p.name: len(list(p.iterdir())) for p in images.iterdir()} == counts  # stale files are gone
    manifest = lake.read_parquet("fruit_images", "manifest")
    assert len(manifest) == sum(counts.values()) == result.metadata["dagster/row_count"]
    assert all(Path(p).is_file() for p in manifest["path"])
    assert GOOD_EXTRAS <= set(manifest["file"])
    quarantine = lake.read_parquet("fruit_images", "quarantine").set_index("file")
    assert set(quarantine.index) == set(BAD_FILES)
    for file, reason in BAD_FILES.items():
        assert quarantine.loc[file, "reason"].startswith(reason), quarantine.loc[file, "reason"]
    assert result.metadata["quarantined"] == len(BAD_FILES)
    (check,) = result.check_results
    assert not check.passed and check.severity.value == "WARN"
