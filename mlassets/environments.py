"""Per-environment resource bindings read from resources/<env>.yaml, `${VAR}` becoming a dagster EnvVar."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from dagster import ConfigurableResource, EnvVar
from pydantic import ValidationError

from mlassets.resources import (
    DatasetsResource,
    KafkaResource,
    LakeParquetIOManager,
    LakeResource,
    MongoResource,
    SparkResource,
)
from mlassets.paths import PROJECT_ROOT
from mlassets.pipes.emr import EMRPipesResource
from mlassets.resources.lake import SCHEME
from mlassets.resources.spark import with_s3a

RESOURCES_DIR = PROJECT_ROOT / "resources"
# Settings that hold a local path: a relative value means a place in the project, whatever the working directory
# (Ivy, for one, refuses a relative `spark.jars.ivy`).
PATH_SETTINGS = frozenset({"datasets.data_dir", "lake.root", "spark.spark_config.spark.jars.ivy",
                           "emr.spark_conf.spark.jars.ivy"})
RESOURCE_TYPES: dict[str, type[ConfigurableResource]] = {
    "datasets": DatasetsResource,
    "kafka": KafkaResource,
    "mongo": MongoResource,
    "lake": LakeResource,
    "spark": SparkResource,
    "emr": EMRPipesResource,
}
# `${VAR}`: a secret or deployment value read at run time (EnvVar);
# `${VAR:-default}`: a plain setting resolved when the definitions load.
WHOLE_VAR = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$")
VAR_WITH_DEFAULT = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}")
ANY_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class EnvironmentError_(ValueError):
    """A resources/<env>.yaml that is missing, malformed or has a bad value; names the file and key."""


def available_environments(resources_dir: Path = RESOURCES_DIR) -> list[str]:
    """The environment names that have a resources/<name>.yaml."""
    return sorted(p.stem for p in resources_dir.glob("*.yaml"))


def project_path(value: str) -> str:
    """A local path taken relative to the project root (URLs such as s3://... are returned as they are)."""
    if SCHEME.match(value) or Path(value).is_absolute():
        return value
    return str(PROJECT_ROOT / value)


def _resolve(value: Any, file: Path, key: str, top_level: bool) -> Any:
    resolved = _resolve_vars(value, file, key, top_level)
    if key in PATH_SETTINGS and isinstance(resolved, str) and not isinstance(resolved, EnvVar):
        return project_path(resolved)
    return resolved


def _resolve_vars(value: Any, file: Path, key: str, top_level: bool) -> Any:
    if isinstance(value, dict):
        return {k: _resolve(v, file, f"{key}.{k}", False) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, file, f"{key}[{i}]", False) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value
    value = VAR_WITH_DEFAULT.sub(lambda m: os.environ.get(m.group(1), m.group(2)), value)
    whole = WHOLE_VAR.match(value)
    if whole and top_level:
        return EnvVar(whole.group(1))
    # Nested values (e.g. inside spark_config) cannot hold an EnvVar: resolve them now.
    missing = [name for name in ANY_VAR.findall(value) if name not in os.environ]
    if missing:
        raise EnvironmentError_(f"{file}: {key}: environment variable(s) {', '.join(missing)} are not set")
    return ANY_VAR.sub(lambda m: os.environ[m.group(1)], value)


def load_environment(name: str, resources_dir: Path = RESOURCES_DIR) -> dict[str, Any]:
    """Every resource key bound for environment `name`, plus the lake IO manager."""
    valid = available_environments(resources_dir)
    if name not in valid:
        raise EnvironmentError_(f"unknown environment {name!r}: choose one of {', '.join(valid)} "
                                f"(files in {resources_dir})")
    file = resources_dir / f"{name}.yaml"
    try:
        raw = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        raise EnvironmentError_(f"{file}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise EnvironmentError_(f"{file}: expected a mapping of resource keys")
    unknown = sorted(set(raw) - set(RESOURCE_TYPES))
    missing = sorted(set(RESOURCE_TYPES) - set(raw))
    if unknown:
        raise EnvironmentError_(f"{file}: unknown resource key(s) {unknown}; expected {sorted(RESOURCE_TYPES)}")
    if missing:
        raise EnvironmentError_(f"{file}: resource key(s) {missing} are not bound")
    resources: dict[str, Any] = {}
    for key, cls in RESOURCE_TYPES.items():
        config = raw[key] or {}
        if not isinstance(config, dict):
            raise EnvironmentError_(f"{file}: {key}: expected a mapping of settings, got {config!r}")
        resolved = {field: _resolve(value, file, f"{key}.{field}", True) for field, value in config.items()}
        # a lake root read at run time (prod's EnvVar) is taken for an object store: every deployed lake is one
        if key == "spark" and (isinstance(resources["lake"].root, EnvVar) or resources["lake"].is_s3):
            resolved["spark_config"] = with_s3a(resolved.get("spark_config") or {})
        try:
            resources[key] = cls(**resolved)
        except ValidationError as exc:
            problems = "; ".join(
                f"{key}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise EnvironmentError_(f"{file}: {problems}") from exc
    resources["io_manager"] = LakeParquetIOManager(lake=resources["lake"], spark=resources["spark"])
    return resources
