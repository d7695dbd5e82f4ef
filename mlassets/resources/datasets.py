"""Where the raw dataset files live (the folder `mlassets data fetch` fills)."""

from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field


class DatasetsResource(ConfigurableResource):
    """The data directory holding cifar10/, susy/, weather/ and fruits360/."""

    data_dir: str = Field(description="Folder filled by `mlassets data fetch` (relative to the working directory).")

    def path(self, *parts: str) -> Path:
        """An absolute path below the data directory."""
        return Path(self.data_dir).resolve().joinpath(*parts)
