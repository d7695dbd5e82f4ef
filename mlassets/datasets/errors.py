"""The error raised for malformed dataset files, naming the file and the record or line."""

from __future__ import annotations

from pathlib import Path


class DatasetFormatError(ValueError):
    """A dataset file that does not have the expected format."""

    def __init__(self, path: str | Path, reason: str, *, record: int | None = None, line: int | None = None,
                 column: str | None = None) -> None:
        self.path = str(path)
        self.reason = reason
        self.record = record
        self.line = line
        self.column = column
        where = [f"{self.path}"]
        if record is not None:
            where.append(f"record {record}")
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        super().__init__(f"{', '.join(where)}: {reason}")
