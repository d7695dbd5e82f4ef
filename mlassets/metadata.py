"""Metadata a person wants to see on a table asset: row count, column schema, a markdown preview."""

from __future__ import annotations

from typing import Any

import hashlib

import pandas as pd
from dagster import DataVersion, MetadataValue, TableColumn, TableSchema

_TYPES = {"i": "int", "u": "int", "f": "float", "b": "bool", "M": "timestamp", "O": "string", "S": "bytes"}


def column_schema(frame: pd.DataFrame, descriptions: dict[str, str] | None = None) -> TableSchema:
    """The frame's columns as a dagster TableSchema."""
    descriptions = descriptions or {}
    return TableSchema(columns=[
        TableColumn(name=str(name), type=_TYPES.get(dtype.kind, str(dtype)), description=descriptions.get(str(name)))
        for name, dtype in frame.dtypes.items()
    ])


def markdown_table(frame: pd.DataFrame, max_rows: int = 20, float_format: str = "{:.4g}") -> str:
    """A markdown table of the first max_rows rows (bytes columns shown by length)."""
    head = frame.head(max_rows)

    def cell(value: Any) -> str:
        if isinstance(value, (bytes, bytearray)):
            return f"<{len(value)} bytes>"
        if isinstance(value, float):
            return float_format.format(value)
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, head.columns)) + " |", "|" + "---|" * len(head.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in head.itertuples(index=False)]
    if len(frame) > max_rows:
        lines.append(f"\n({len(frame) - max_rows} more rows)")
    return "\n".join(lines)


def table_metadata(frame: pd.DataFrame, descriptions: dict[str, str] | None = None,
                   preview_rows: int = 10) -> dict[str, Any]:
    """Row count, column schema and a preview for a pandas table."""
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": column_schema(frame, descriptions),
        "preview": MetadataValue.md(markdown_table(frame, preview_rows)),
    }


def content_version(*frames: pd.DataFrame) -> DataVersion:
    """A data version from the frames' content, so that children are stale only when the data really changed."""
    digest = hashlib.sha256()
    for frame in frames:
        digest.update(",".join(map(str, frame.columns)).encode())
        digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return DataVersion(digest.hexdigest()[:24])
