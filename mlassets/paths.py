"""Where the project keeps its files: the checkout's root, the download cache and the run folders below it."""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = PROJECT_ROOT / ".cache"  # downloads and builds reused between runs (Kafka jars, FerretDB, Ivy)
RUN_DIR = PROJECT_ROOT / ".mlassets"  # what runs write: the stack's data, the Dagster instance, logs
DAGSTER_HOME = RUN_DIR / "dagster_home"
LOG_DIR = RUN_DIR / "logs"


def sample_data_dir() -> Path:
    """The real data samples that tests and benchmarks read: $MLASSETS_TEST_DATA or shared/data beside the project."""
    return Path(os.environ.get("MLASSETS_TEST_DATA", PROJECT_ROOT.parent / "shared" / "data")).resolve()
