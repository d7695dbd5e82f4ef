"""The data lake: a local directory or an s3:// prefix, with parquet and byte I/O for pandas and Spark."""

import posixpath
import re
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq
from dagster import ConfigurableResource, EnvVar
from pydantic import Field, field_validator

PANDAS_PART = "part-00000.parquet"
SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
S3_SCHEMES = ("s3", "s3a")


def lake_root(root: str) -> str:
    """The root as the lake keeps it: `s3://bucket/prefix` for s3:// or s3a:// in any letter case, or the local path.

    Anything else that starts like a URL (`gs://`, `http://`, `S3:/x`) is a ValueError rather than a local folder
    named after it.
    """
    if not root.strip():
        raise ValueError("the lake root is empty")
    scheme = SCHEME.match(root)
    if scheme is None:
        return root
    name, rest = scheme.group(1).lower(), root[scheme.end():]
    if name not in S3_SCHEMES:
        raise ValueError(f"lake root {root!r}: unsupported scheme {scheme.group(1)}:, use s3://bucket/prefix, "
                         "s3a://bucket/prefix or a local path (./name for a folder whose name has a colon)")
    if not rest.startswith("//") or not rest[2:].split("/", 1)[0]:
        raise ValueError(f"lake root {root!r}: expected {name}://bucket or {name}://bucket/prefix")
    return "s3:" + rest


class LakeResource(ConfigurableResource):
    """Where assets keep files: `root` is a directory or `s3://bucket/prefix` (MinIO/moto via endpoint_url)."""

    root: str = Field(description="Local directory (relative to the project root in resources/*.yaml) or "
                                  "s3://bucket/prefix "
                                  "(s3a:// and any letter case accepted; other URL schemes are refused).")
    endpoint_url: str | None = Field(default=None, description="S3 endpoint for MinIO or moto; None for AWS.")
    region: str = Field(default="us-east-1", description="S3 region.")
    access_key_id: str | None = Field(default=None, description="S3 access key; bind to an EnvVar.")
    secret_access_key: str | None = Field(default=None, description="S3 secret key; bind to an EnvVar.")

    @field_validator("root")
    @classmethod
    def _known_root(cls, root: str) -> str:
        # an EnvVar is validated with its value: dagster constructs the resource again when the run resolves it
        return root if isinstance(root, EnvVar) else lake_root(root)

    @property
    def is_s3(self) -> bool:
        return self.root.startswith("s3://")

    def uri(self, *parts: str) -> str:
        """The full location of parts below the root (s3://... or an absolute local path)."""
        if self.is_s3:
            return posixpath.join(self.root.rstrip("/"), *parts)
        return str(Path(self.root).resolve().joinpath(*parts))

    def spark_uri(self, *parts: str) -> str:
        """The location as Spark's Hadoop filesystems name it (s3a:// for S3)."""
        uri = self.uri(*parts)
        return "s3a://" + uri[len("s3://"):] if self.is_s3 else uri

    def filesystem(self) -> pafs.FileSystem:
        """A pyarrow filesystem for the lake."""
        if not self.is_s3:
            return pafs.LocalFileSystem()
        scheme, _, host = (self.endpoint_url or "").partition("://")
        return pafs.S3FileSystem(
            access_key=self.access_key_id, secret_key=self.secret_access_key, region=self.region,
            endpoint_override=host or None, scheme=scheme or "https",
        )

    def _fs_path(self, *parts: str) -> str:
        uri = self.uri(*parts)
        return uri[len("s3://"):] if self.is_s3 else uri

    def _dataset(self, *parts: str) -> pads.Dataset:
        """The parquet directory at parts as a pyarrow dataset (names starting with "." or "_" are Spark's
        bookkeeping and left out)."""
        return pads.dataset(self._fs_path(*parts), filesystem=self.filesystem(), format="parquet",
                            exclude_invalid_files=False, ignore_prefixes=[".", "_"])

    def parquet_files(self, *parts: str) -> list[str]:
        """The files of the parquet directory at parts, as paths of `filesystem()`, sorted; a FileNotFoundError
        names a missing directory."""
        if self.filesystem().get_file_info(self._fs_path(*parts)).type != pafs.FileType.Directory:
            raise FileNotFoundError(f"no parquet directory at {self.uri(*parts)}")
        return sorted(self._dataset(*parts).files)

    def s3_client(self) -> Any:
        """A boto3 S3 client for the lake's endpoint."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id=self.access_key_id, aws_secret_access_key=self.secret_access_key)

    def ensure_bucket(self) -> None:
        """Create the root bucket when it does not exist (local roots: create the directory)."""
        if not self.is_s3:
            Path(self.uri()).mkdir(parents=True, exist_ok=True)
            return
        client = self.s3_client()
        bucket = self.root[len("s3://"):].split("/", 1)[0]
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)

    def delete(self, *parts: str) -> None:
        """Remove a directory (prefix) or file below the root, if present."""
        fs, path = self.filesystem(), self._fs_path(*parts)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            if self.is_s3:
                fs.delete_dir_contents(path, missing_dir_ok=True)
                fs.delete_dir(path)
            else:
                shutil.rmtree(path)
        elif info.type == pafs.FileType.File:
            fs.delete_file(path)

    def exists(self, *parts: str) -> bool:
        """True when a file or directory exists below the root."""
        return self.filesystem().get_file_info(self._fs_path(*parts)).type != pafs.FileType.NotFound

    def write_bytes(self, data: bytes, *parts: str) -> str:
        """Write one object; returns its uri."""
        fs, path = self.filesystem(), self._fs_path(*parts)
        fs.create_dir(posixpath.dirname(path), recursive=True)
        with fs.open_output_stream(path) as out:
            out.write(data)
        return self.uri(*parts)

    def read_bytes(self, *parts: str) -> bytes:
        """Read one object."""
        with self.filesystem().open_input_stream(self._fs_path(*parts)) as src:
            return src.read()

    def write_parquet(self, frame: pd.DataFrame, *parts: str) -> str:
        """Replace the parquet directory at parts with the frame (one part file); returns the directory uri."""
        self.ensure_bucket()
        self.delete(*parts)
        fs, path = self.filesystem(), self._fs_path(*parts)
        fs.create_dir(path, recursive=True)
        table = pa.Table.from_pandas(frame, preserve_index=False)
        pq.write_table(table, posixpath.join(path, PANDAS_PART), filesystem=fs)
        return self.uri(*parts)

    def read_parquet(self, *parts: str, columns: list[str] | None = None) -> pd.DataFrame:
        """Read a parquet directory (written by pandas or Spark) into one frame."""
        return self._dataset(*parts).to_table(columns=columns).to_pandas()
