"""deploy/docker: the compose services, ports, volumes and env agree with mlassets/resources/docker.yaml and
dagster.yaml."""

import re
import shutil
import tomllib
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import dagster_instance_config
from dagster_docker import DockerRunLauncher

from mlassets.stack.settings import KAFKA_VERSION

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "deploy" / "docker"
DEFAULTED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-([^}]*)\}")
BARE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[-?][^}]*)?\}")


def defaults_of(value: str) -> str:
    """A resources/*.yaml value as it loads with no MLASSETS_* variable set (the docker image's settings)."""
    return DEFAULTED.sub(lambda m: m.group(2), value)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DOCKER / "docker-compose.yaml").read_text())


@pytest.fixture(scope="module")
def instance() -> dict:
    return yaml.safe_load((DOCKER / "dagster.yaml").read_text())


@pytest.fixture(scope="module")
def env_file() -> dict:
    return yaml.safe_load((REPO / "mlassets" / "resources" / "docker.yaml").read_text())


def service_env(compose: dict, name: str) -> dict[str, str]:
    env = compose["services"][name].get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def listens(compose: dict, name: str, port: int) -> bool:
    service = compose["services"][name]
    return str(port) in {str(p) for p in service.get("expose", [])}


def test_every_service_is_defined(compose: dict) -> None:
    assert set(compose["services"]) == {
        "kafka", "mongo", "minio", "lake-bucket", "postgres", "spark-master", "spark-worker",
        "user-code", "dagster-webserver", "dagster-daemon",
    }
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"  # same broker as the local stack
    for name, service in compose["services"].items():
        assert service["networks"] == ["mlassets"], name
        assert ":latest" not in service["image"] or service["image"] == "mlassets-user-code:latest", name


def test_kafka_is_kraft_and_advertises_the_bootstrap_of_docker_yaml(compose: dict, env_file: dict) -> None:
    host, port = defaults_of(env_file["kafka"]["bootstrap_servers"]).split(":")
    env = service_env(compose, host)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert f"PLAINTEXT://{host}:{port}" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert listens(compose, host, int(port))


def test_mongo_minio_and_spark_master_match_docker_yaml(compose: dict, env_file: dict) -> None:
    mongo = urlparse(defaults_of(env_file["mongo"]["uri"]))
    assert listens(compose, mongo.hostname, mongo.port)
    assert compose["services"][mongo.hostname]["image"].startswith("mongo:")

    lake = env_file["lake"]
    endpoint = urlparse(defaults_of(lake["endpoint_url"]))
    assert compose["services"][endpoint.hostname]["image"].startswith("minio/minio:")
    assert listens(compose, endpoint.hostname, endpoint.port)
    assert f":{endpoint.port}" in compose["services"][endpoint.hostname]["command"]
    bucket = urlparse(defaults_of(lake["root"])).netloc
    assert service_env(compose, "lake-bucket")["MLASSETS_LAKE_BUCKET"] == bucket
    # the lake keys are the MinIO root credentials, read from the same compose variables
    assert lake["access_key_id"] == "${MINIO_ROOT_USER}" and lake["secret_access_key"] == "${MINIO_ROOT_PASSWORD}"
    minio_env = service_env(compose, endpoint.hostname)
    for service in ("user-code", "dagster-daemon", "lake-bucket"):
        for var in ("MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"):
            assert service_env(compose, service)[var] == minio_env[var], (service, var)

    # Spark's MinIO endpoint and Mongo URI are derived from these (test_environments.py)
    spark = {k: defaults_of(str(v)) for k, v in env_file["spark"]["spark_config"].items()}
    master = urlparse(spark["spark.master"])
    command = compose["services"][master.hostname]["command"]
    assert command[1] == "org.apache.spark.deploy.master.Master"
    assert command[command.index("--host") + 1] == master.hostname
    assert command[command.index("--port") + 1] == str(master.port)
    worker = compose["services"]["spark-worker"]["command"]
    assert worker[1] == "org.apache.spark.deploy.worker.Worker" and worker[-1] == spark["spark.master"]


def test_spark_class_is_the_images_pip_pyspark(compose: dict) -> None:
    dockerfile = (DOCKER / "Dockerfile").read_text()
    spark_home = re.search(r"SPARK_HOME=(\S+)", dockerfile).group(1)
    python = re.search(r"^FROM python:(\d+\.\d+)", dockerfile, re.M).group(1)
    assert f"/python{python}/" in spark_home
    for name in ("spark-master", "spark-worker"):
        assert compose["services"][name]["command"][0] == f"{spark_home}/bin/spark-class"
        assert compose["services"][name]["image"] == compose["services"]["user-code"]["image"]


def test_unset_variables_of_docker_yaml_reach_the_code_and_the_runs(compose: dict, instance: dict) -> None:
    text = (REPO / "mlassets" / "resources" / "docker.yaml").read_text()
    required = set(BARE.findall(text))
    assert required == {"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}
    forwarded = set(instance["run_launcher"]["config"]["env_vars"])
    daemon_env = service_env(compose, "dagster-daemon")
    assert required <= forwarded
    assert required <= set(service_env(compose, "user-code"))
    # the launcher forwards from the daemon's environment: every name must be set there
    assert forwarded <= set(daemon_env), forwarded - set(daemon_env)
    assert service_env(compose, "user-code")["MLASSETS_ENV"] == daemon_env["MLASSETS_ENV"] == "docker"


def test_data_and_ivy_volumes_are_mounted_where_docker_yaml_looks(compose: dict, instance: dict,
                                                                  env_file: dict) -> None:
    data_dir = defaults_of(env_file["datasets"]["data_dir"])
    ivy_dir = defaults_of(env_file["spark"]["spark_config"]["spark.jars.ivy"])
    named = {spec.get("name", key) if spec else key for key, spec in compose["volumes"].items()}
    run_volumes = instance["run_launcher"]["config"]["container_kwargs"]["volumes"]
    for target in (data_dir, ivy_dir):
        assert any(v.split(":")[1] == target for v in compose["services"]["user-code"]["volumes"]), target
        assert any(v.split(":")[1] == target for v in run_volumes), target
    for volume in run_volumes:  # the run containers are not compose services: names must be fixed
        assert volume.split(":")[0] in named, volume
    assert instance["run_launcher"]["config"]["network"] == compose["networks"]["mlassets"]["name"]


def test_dagster_yaml_is_a_valid_instance_with_postgres_from_the_compose_env(compose: dict, instance: dict,
                                                                            tmp_path: Path) -> None:
    shutil.copy(DOCKER / "dagster.yaml", tmp_path / "dagster.yaml")
    dagster_instance_config(str(tmp_path))
    launcher = instance["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_docker", "DockerRunLauncher")
    result = validate_config(DockerRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors
    db = instance["storage"]["postgres"]["postgres_db"]
    env = service_env(compose, "dagster-webserver")
    postgres = service_env(compose, "postgres")
    assert env[db["hostname"]["env"]] == "postgres" and listens(compose, "postgres", db["port"])
    assert env[db["username"]["env"]] == postgres["POSTGRES_USER"]
    assert env[db["password"]["env"]] == postgres["POSTGRES_PASSWORD"]
    assert env[db["db_name"]["env"]] == postgres["POSTGRES_DB"]


def test_a_broken_instance_file_is_rejected(tmp_path: Path) -> None:
    text = (DOCKER / "dagster.yaml").read_text().replace("db_name:", "database:")
    (tmp_path / "dagster.yaml").write_text(text)
    with pytest.raises(Exception, match="db_name"):
        dagster_instance_config(str(tmp_path))


def test_webserver_daemon_and_runs_share_the_code_location(compose: dict) -> None:
    workspace = yaml.safe_load((DOCKER / "workspace.yaml").read_text())
    grpc = workspace["load_from"][0]["grpc_server"]
    user_code = compose["services"]["user-code"]
    dockerfile = (DOCKER / "Dockerfile").read_text()
    cmd = re.search(r"^CMD (\[.*\])$", dockerfile, re.M).group(1)
    assert f'"-p", "{grpc["port"]}"' in cmd and '"-h", "0.0.0.0"' in cmd
    assert grpc["host"] == "user-code" and listens(compose, "user-code", grpc["port"])
    assert service_env(compose, "user-code")["DAGSTER_CURRENT_IMAGE"] == user_code["image"]
    for name in ("dagster-webserver", "dagster-daemon"):
        command = compose["services"][name]["command"]
        assert command[command.index("-w") + 1] == "deploy/docker/workspace.yaml"
    assert user_code["build"]["dockerfile"] == "deploy/docker/Dockerfile"
    assert (DOCKER / user_code["build"]["context"]).resolve() == REPO
    # the package carries the environments' YAML and the Pipes scripts
    for line in ("COPY mlassets ./mlassets", "COPY deploy/docker/dagster.yaml ${DAGSTER_HOME}/dagster.yaml"):
        assert line in dockerfile


def test_image_pins_match_pyproject() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    pins = dict(dep.split("==") for dep in pyproject["project"]["dependencies"] if "==" in dep)
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert f"dagster-postgres=={pins['dagster-aws']}" in dockerfile  # integration libraries share a version
    assert re.search(r"^FROM python:3\.11", dockerfile, re.M)


def test_secrets_are_required_not_written(compose: dict) -> None:
    text = (DOCKER / "docker-compose.yaml").read_text()
    for var in ("MINIO_ROOT_PASSWORD", "DAGSTER_POSTGRES_PASSWORD"):
        assert re.search(rf"\$\{{{var}:\?", text), var
    example = dict(line.split("=", 1) for line in (DOCKER / ".env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert example["MINIO_ROOT_PASSWORD"] == example["DAGSTER_POSTGRES_PASSWORD"] == ""
    assert set(COMPOSE_VAR.findall(text)) <= set(example)
