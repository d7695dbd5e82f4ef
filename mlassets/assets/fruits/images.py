"""The Fruits-360 images in the lake, `fruit_images/images/<class>/<file>`, with a manifest and a quarantine table."""

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    Config,
    MaterializeResult,
    MetadataValue,
    asset,
)
from pydantic import Field

from mlassets.automation import TRANSIENT_RETRY
from mlassets.datasets.fruits360 import find_fruits, inspect_image, list_fruit_files
from mlassets.metadata import column_schema, content_version, markdown_table
from mlassets.models.serialization import sha256_hex
from mlassets.resources import DatasetsResource, LakeResource

ASSET = "fruit_images"
IMAGES_DIR = "images"
MANIFEST_DIR = "manifest"
QUARANTINE_DIR = "quarantine"
MANIFEST_COLUMNS = ["path", "label", "file", "bytes", "format", "width", "height", "mode", "sha256"]
QUARANTINE_COLUMNS = ["source", "label", "file", "bytes", "sha256", "reason"]


class FruitImagesConfig(Config):
    """Which Fruits-360 images to copy into the lake."""

    source: str | None = Field(default=None, description=(
        "Folder of class folders (or one holding fruits360/Test or Test); None: the datasets resource's folder."))
    max_images_per_class: int | None = Field(default=10, ge=1, description=(
        "Copy at most this many files per class (the first by file name); None: all. The default keeps the "
        "main job's share on a laptop around a minute."))
    max_classes: int | None = Field(default=None, ge=1, description="Only the first classes by name; None: all.")
    copy_threads: int = Field(default=8, ge=1, description="Parallel uploads (matters for an s3:// lake).")


def select_files(files: pd.DataFrame, max_images_per_class: int | None, max_classes: int | None) -> pd.DataFrame:
    """The first max_classes classes by name and the first max_images_per_class files of each (sorted by path)."""
    files = files.sort_values("path").reset_index(drop=True)
    if max_classes is not None:
        keep = sorted(files["label"].unique())[:max_classes]
        files = files[files["label"].isin(keep)]
    if max_images_per_class is not None:
        files = files.groupby("label", sort=True, group_keys=False).head(max_images_per_class)
    return files.reset_index(drop=True)


def sort_files(files: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    """Read and fully decode each file: (accepted images, quarantined files with the reason)."""
    accepted, quarantined = [], []
    for row in files.itertuples(index=False):
        path = Path(row.path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            quarantined.append({"source": str(path), "label": row.label, "file": path.name, "bytes": 0,
                                "sha256": "", "reason": f"unreadable file: {exc}"})
            continue
        info, reason = inspect_image(data)
        digest = sha256_hex(data)
        if info is None:
            quarantined.append({"source": str(path), "label": row.label, "file": path.name, "bytes": len(data),
                                "sha256": digest, "reason": reason})
        else:
            accepted.append({"label": row.label, "file": path.name, "bytes": len(data), **info, "sha256": digest,
                             "data": data})
    return accepted, quarantined


@asset(
    retry_policy=TRANSIENT_RETRY,
    check_specs=[AssetCheckSpec("no_quarantined_files", asset=ASSET,
                                description="every source file decoded as a JPEG or PNG image")],
)
def fruit_images(context: AssetExecutionContext, config: FruitImagesConfig, datasets: DatasetsResource,
                 lake: LakeResource) -> MaterializeResult:
    """Fruits-360 JPEG/PNG images in the lake at fruit_images/images/<class>/<file> (label = class folder name)."""
    started = time.perf_counter()
    root = find_fruits(config.source or datasets.path())
    files = select_files(list_fruit_files(root), config.max_images_per_class, config.max_classes)
    if files.empty:
        raise FileNotFoundError(f"no files in the class folders under {root}")
    accepted, quarantined = sort_files(files)
    for row in quarantined:
        context.log.warning(f"quarantined {row['source']}: {row['reason']}")

    lake.ensure_bucket()
    lake.delete(ASSET)  # a new selection replaces the old one completely

    def upload(row: dict) -> str:
        return lake.write_bytes(row.pop("data"), ASSET, IMAGES_DIR, row["label"], row["file"])

    with ThreadPoolExecutor(config.copy_threads) as pool:
        uris = list(pool.map(upload, accepted))
    manifest = pd.DataFrame([{"path": uri, **row} for uri, row in zip(uris, accepted)], columns=MANIFEST_COLUMNS)
    quarantine = pd.DataFrame(quarantined, columns=QUARANTINE_COLUMNS)
    lake.write_parquet(manifest, ASSET, MANIFEST_DIR)
    lake.write_parquet(quarantine, ASSET, QUARANTINE_DIR)

    per_class = manifest.groupby("label").size().rename("images").reset_index()
    modes = manifest.groupby(["format", "mode"]).size().rename("images").reset_index()
    return MaterializeResult(
        data_version=content_version(manifest[["label", "file", "sha256"]], quarantine),
        metadata={
            "dagster/row_count": len(manifest),
            "dagster/column_schema": column_schema(manifest),
            "images_uri": lake.uri(ASSET, IMAGES_DIR),
            "manifest_uri": lake.uri(ASSET, MANIFEST_DIR),
            "quarantine_uri": lake.uri(ASSET, QUARANTINE_DIR),
            "source": str(root),
            "classes": int(manifest["label"].nunique()),
            "quarantined": len(quarantine),
            "quarantine": MetadataValue.md(markdown_table(quarantine[["source", "reason"]]) if len(quarantine)
                                           else "no quarantined files"),
            "formats": MetadataValue.md(markdown_table(modes)),
            "per_class": MetadataValue.md(markdown_table(per_class, max_rows=200)),
            "bytes": int(manifest["bytes"].sum()),
            "seconds": round(time.perf_counter() - started, 2),
        },
        check_results=[AssetCheckResult(
            check_name="no_quarantined_files", passed=quarantine.empty, severity=AssetCheckSeverity.WARN,
            metadata={"quarantined": len(quarantine), "accepted": len(manifest)},
        )],
    )
