"""The name of the environment a process binds: $MLASSETS_ENV, or `local` (kept free of heavy imports)."""

import os

ENV_VAR = "MLASSETS_ENV"
DEFAULT_ENVIRONMENT = "local"


def environment_name() -> str:
    """The environment chosen for this process: $MLASSETS_ENV, or `local`."""
    return os.environ.get(ENV_VAR, DEFAULT_ENVIRONMENT)
