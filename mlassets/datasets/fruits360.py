"""Fruits-360 image folders: `<root>/<class>/<file>`, the label being the folder name."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def find_fruits(root: str | Path) -> Path:
    """The class-folder root under root: root/fruits360/Test, root/Test or root itself."""
    root = Path(root)
    for base in (root / "fruits360" / "Test", root / "Test", root):
        if base.is_dir() and any(p.is_dir() for p in base.iterdir()):
            return base
    raise FileNotFoundError(f"no Fruits-360 class folders under {root}")


def list_fruit_files(root: str | Path) -> pd.DataFrame:
    """Every file one level below a class folder: path, label (the folder name), bytes; sorted by path."""
    root = Path(root)
    rows = [
        {"path": str(path), "label": path.parent.name, "bytes": path.stat().st_size}
        for class_dir in sorted(p for p in root.iterdir() if p.is_dir())
        for path in sorted(class_dir.iterdir())
        if path.is_file() and not path.name.startswith(".")
    ]
    return pd.DataFrame(rows, columns=["path", "label", "bytes"])


ACCEPTED_FORMATS = ("JPEG", "PNG")


def inspect_image(data: bytes) -> tuple[dict | None, str | None]:
    """(format, width, height, mode) of a fully decodable JPEG/PNG, or None and the reason it is refused."""
    import io

    from PIL import Image

    if not data:
        return None, "empty file"
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, size, mode = image.format, image.size, image.mode
            if kind not in ACCEPTED_FORMATS:
                return None, f"unsupported image format {kind} (accepted: {', '.join(ACCEPTED_FORMATS)})"
            image.load()  # decodes every pixel: truncated files fail here, not in a later step
    except Image.UnidentifiedImageError:
        return None, "not an image: Pillow cannot identify the file's format"
    except Exception as exc:  # OSError for truncated data, SyntaxError/ValueError for broken headers
        return None, f"corrupt or truncated image: {type(exc).__name__}: {exc}"
    return {"format": kind, "width": size[0], "height": size[1], "mode": mode}, None
