"""Per-environment resource bindings read from mlassets/resources/<env>.yaml, `${VAR}` becoming a dagster EnvVar.

The YAML files are package data: a built wheel finds them in the installed package.
"""

from __future__ import annotations

import os
import re
from importlib.resources import files
from importlib.resources.abc import Traversable
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

RESOURCES_DIR: Traversable = files("mlassets.resources")  # <env>.yaml beside the resource types
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


def available_environments(resources_dir: Traversable = RESOURCES_DIR) -> list[str]:
    """The environment names that have a resources/<name>.yaml."""
    return sorted(p.name.removesuffix(".yaml") for p in resources_dir.iterdir() if p.name.endswith(".yaml"))


def project_path(value: str) -> str:
    """A local path taken relative to the project root (URLs such as s3://... are returned as they are)."""
    if SCHEME.match(value) or Path(value).is_absolute():
        return value
    return str(PROJECT_ROOT / value)


def _resolve(value: Any, file: Traversable, key: str, top_level: bool) -> Any:
    resolved = _resolve_vars(value, file, key, top_level)
    if key in PATH_SETTINGS and isinstance(resolved, str) and not isinstance(resolved, EnvVar):
        return project_path(resolved)
    return resolved


def _resolve_vars(value: Any, file: Traversable, key: str, top_level: bool) -> Any:
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


def derived_spark_settings(mongo: MongoResource, lake: LakeResource) -> dict[str, tuple[str, Any]]:
    """Spark's settings that repeat a value of the mongo or lake resource: setting -> (where it comes from, value).

    The connector reads and writes the `mongo` server; S3A reaches the lake's endpoint (MinIO or moto: path-style
    addressing, TLS as the endpoint's scheme says) with the lake's keys. Values may still be EnvVars.
    """
    derived: dict[str, tuple[str, Any]] = {
        "spark.mongodb.read.connection.uri": ("mongo.uri", mongo.uri),
        "spark.mongodb.write.connection.uri": ("mongo.uri", mongo.uri),
    }
    if lake.endpoint_url:
        endpoint = ("lake.endpoint_url", lake.endpoint_url)
        derived.update({
            "spark.hadoop.fs.s3a.endpoint": endpoint,
            "spark.hadoop.fs.s3a.endpoint.region": ("lake.region", lake.region),
            "spark.hadoop.fs.s3a.path.style.access": ("lake.endpoint_url", "true"),
            "spark.hadoop.fs.s3a.connection.ssl.enabled": endpoint,  # "true"/"false" once the value is known
        })
    if lake.access_key_id:
        derived["spark.hadoop.fs.s3a.access.key"] = ("lake.access_key_id", lake.access_key_id)
    if lake.secret_access_key:
        derived["spark.hadoop.fs.s3a.secret.key"] = ("lake.secret_access_key", lake.secret_access_key)
    return derived


def _spark_config(config: dict[str, Any], mongo: MongoResource, lake: LakeResource,
                  file: Traversable) -> dict[str, Any]:
    """The spark resource's settings with those derived from mongo and lake (the YAML's own values win).

    spark_config is one mapping, which cannot hold an EnvVar: a derived value bound to `${VAR}` (prod's Mongo URI,
    docker's MinIO keys) is read now, as the YAML's nested `${VAR}` values are, while the mongo and lake resources
    keep their EnvVar.
    """
    derived = {}
    for setting, (source, value) in derived_spark_settings(mongo, lake).items():
        if setting in config:
            continue
        if isinstance(value, EnvVar):
            name, value = value.env_var_name, value.get_value()
            if value is None:
                raise EnvironmentError_(f"{file}: spark.spark_config.{setting}: environment variable {name} "
                                        f"(from {source}) is not set")
        if setting == "spark.hadoop.fs.s3a.connection.ssl.enabled":
            value = str(value.lower().startswith("https://")).lower()
        derived[setting] = value
    config = {**config, **derived}
    # a lake root read at run time (prod's EnvVar) is taken for an object store: every deployed lake is one
    return with_s3a(config) if isinstance(lake.root, EnvVar) or lake.is_s3 else config


def load_environment(name: str, resources_dir: Traversable = RESOURCES_DIR) -> dict[str, Any]:
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
        if key == "spark":
            resolved["spark_config"] = _spark_config(resolved.get("spark_config") or {}, resources["mongo"],
                                                     resources["lake"], file)
        try:
            resources[key] = cls(**resolved)
        except ValidationError as exc:
            problems = "; ".join(
                f"{key}.{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
            )
            raise EnvironmentError_(f"{file}: {problems}") from exc
    resources["io_manager"] = LakeParquetIOManager(lake=resources["lake"], spark=resources["spark"])
    return resources
