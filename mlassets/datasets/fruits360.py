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
