"""Shared fixtures: the real local stack on test ports, the shared data folder, one Spark session."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlassets.paths import sample_data_dir
from mlassets.stack import LocalStack, StackError, StackSettings

REPO = Path(__file__).resolve().parent.parent
OUTDATED = re.compile(r"SupersessionWarning|DeprecationWarning|deprecated|superseded", re.IGNORECASE)
"""What Dagster prints when a command or an API is on its way out (SupersessionWarning, DeprecationWarning, ...)."""


def dg_environ() -> dict[str, str]:
    """This process's environment as a user's shell has it for `dg`: no warning filters, no activated virtualenv."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", "VIRTUAL_ENV")}


def test_stack_settings() -> StackSettings:
    """Ports and directories of the test stack, apart from a developer's running `mlassets stack up`."""
    return StackSettings.from_env(
        run_dir=Path(os.environ.get("MLASSETS_TEST_STACK_DIR", REPO / ".mlassets" / "test-stack")).resolve(),
        cache_dir=REPO / ".cache",
        kafka_port=int(os.environ.get("MLASSETS_TEST_KAFKA_PORT", 19092)),
        kafka_controller_port=int(os.environ.get("MLASSETS_TEST_KAFKA_CONTROLLER_PORT", 19093)),
        mongo_port=int(os.environ.get("MLASSETS_TEST_MONGO_PORT", 37017)),
        s3_port=int(os.environ.get("MLASSETS_TEST_S3_PORT", 19000)),
    )


def dagster_cli(args: list[str], env: dict[str, str], timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the venv's `dagster` command from the repository root, capturing its output."""
    return subprocess.run([str(Path(sys.executable).with_name("dagster")), *args], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = sample_data_dir()
    if not path.is_dir():
        pytest.fail(f"the shared data folder {path} is missing; set MLASSETS_TEST_DATA to its location")
    return path


@pytest.fixture(scope="session")
def stack() -> Iterator[StackSettings]:
    """The real Kafka, FerretDB and moto S3 servers, started for the session and stopped after it."""
    local = LocalStack(test_stack_settings())
    try:
        started = local.up()
    except StackError as exc:
        pytest.fail(f"the local stack could not start: {exc}", pytrace=False)
    yield local.settings
    if started and not os.environ.get("MLASSETS_TEST_KEEP_STACK"):
        local.down()


@pytest.fixture(scope="session")
def test_env(stack: StackSettings, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment variables that point resources/local.yaml at the test stack."""
    return {
        "MLASSETS_ENV": "local",
        "MLASSETS_DATA_DIR": str(data_dir),
        "MLASSETS_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
        "MLASSETS_MONGO_URI": stack.mongo_uri,
        "MLASSETS_S3_ENDPOINT": stack.s3_endpoint,
        "MLASSETS_LAKE_ROOT": str(tmp_path_factory.mktemp("lake")),
        "MLASSETS_SPARK_MASTER": "local[2]",
    }


@pytest.fixture(scope="session")
def local_resources(test_env: dict[str, str]) -> dict:
    """resources/local.yaml loaded against the test stack."""
    from mlassets.environments import load_environment

    saved = {k: os.environ.get(k) for k in test_env}
    os.environ.update(test_env)
    try:
        return load_environment("local")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def spark_resource(local_resources: dict):
    """The Spark resource of the test process, configured like local.yaml, plus S3A for the moto lake tests."""
    from mlassets.resources.spark import SparkResource, with_s3a

    resource = SparkResource(spark_config=with_s3a(local_resources["spark"].spark_config))
    yield resource
    if resource._spark_session is not None:
        resource._spark_session.stop()


def live_session(spark_resource):
    """The resource's Spark session, started again where a test that needed a driver of its own (a cluster's)
    stopped it."""
    session = spark_resource.spark_session
    if session.sparkContext._jsc is None:
        spark_resource._spark_session = None
        session = spark_resource.spark_session
    return session


@pytest.fixture
def spark(spark_resource):
    """The local Spark session of the test process (with S3A)."""
    return live_session(spark_resource)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topics, buckets and collections."""
    return uuid.uuid4().hex[:10]
