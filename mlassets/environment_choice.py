"""The name of the environment a process binds: $MLASSETS_ENV, or `local` (kept free of heavy imports).

The only reader of $MLASSETS_ENV: the definitions, the CLI (`mlassets --env`) and the main run go through here.
"""

import os

ENV_VAR = "MLASSETS_ENV"
DEFAULT_ENVIRONMENT = "local"


def environment_name() -> str:
    """The environment chosen for this process: $MLASSETS_ENV, or `local`."""
    return os.environ.get(ENV_VAR, DEFAULT_ENVIRONMENT)


def choose_environment(name: str) -> None:
    """Bind `name` for the definitions this process loads next and for the `dagster` commands it starts."""
    os.environ[ENV_VAR] = name
