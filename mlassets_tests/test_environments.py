"""Every environment binds the same resource keys; bad names and values fail naming the file and key."""

import os
from pathlib import Path

import pytest
import yaml
from dagster import EnvVar

from mlassets.environments import EnvironmentError_, available_environments, load_environment
from mlassets_tests.conftest import dagster_cli

REPO = Path(__file__).resolve().parent.parent
ENVIRONMENTS = REPO / "mlassets" / "resources"  # the <env>.yaml files
PROD_VARS = {
    "MLASSETS_KAFKA_BOOTSTRAP": "broker-1:9096", "MLASSETS_KAFKA_USERNAME": "u", "MLASSETS_KAFKA_PASSWORD": "p",
    "MLASSETS_MONGO_URI": "mongodb://db:27017/", "MLASSETS_LAKE_ROOT": "s3://bucket/lake",
    "MLASSETS_DATA_DIR": "/data", "MLASSETS_SPARK_MASTER": "yarn",
    "MINIO_ROOT_USER": "minio", "MINIO_ROOT_PASSWORD": "minio-secret",
    "MLASSETS_EMR_SCRIPTS_URI": "s3://bucket/emr", "MLASSETS_EMR_LOG_URI": "s3://bucket/emr-logs/",
    "MLASSETS_EMR_PIPES_BUCKET": "bucket", "MLASSETS_EMR_MONGO_SECRET_ID": "mlassets/mongo-uri",
}


def test_three_environments_exist() -> None:
    assert available_environments() == ["docker", "local", "prod"]


def test_every_environment_yields_the_same_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PROD_VARS.items():
        monkeypatch.setenv(name, value)
    keys = {env: sorted(load_environment(env)) for env in available_environments()}
    assert keys["local"] == ["datasets", "emr", "io_manager", "kafka", "lake", "mongo", "spark"]
    assert keys["docker"] == keys["local"] == keys["prod"]


def test_secrets_become_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PROD_VARS.items():
        monkeypatch.setenv(name, value)
    prod = load_environment("prod")
    assert prod["kafka"].sasl_password == EnvVar("MLASSETS_KAFKA_PASSWORD")
    assert prod["mongo"].uri == EnvVar("MLASSETS_MONGO_URI")


def test_unknown_environment_lists_the_valid_ones() -> None:
    with pytest.raises(EnvironmentError_, match="unknown environment 'staging': choose one of docker, local, prod"):
        load_environment("staging")




def test_bad_value_names_file_and_key(tmp_path: Path) -> None:
    folder = tmp_path
    text = (ENVIRONMENTS / "local.yaml").read_text().replace(
        "kafka:\n  bootstrap_servers", "kafka:\n  request_timeout_ms: soon\n  bootstrap_servers")
    (folder / "local.yaml").write_text(text)
    with pytest.raises(EnvironmentError_, match=r"local.yaml: kafka.request_timeout_ms: Input should be a valid integer"):
        load_environment("local", folder)


def test_unknown_and_missing_keys(tmp_path: Path) -> None:
    (tmp_path / "local.yaml").write_text("kafka:\n  bootstrap_servers: x:1\nredis:\n  url: y\n")
    with pytest.raises(EnvironmentError_, match=r"local.yaml: unknown resource key\(s\) \['redis'\]"):
        load_environment("local", tmp_path)
    (tmp_path / "local.yaml").write_text("kafka:\n  bootstrap_servers: x:1\n")
    with pytest.raises(EnvironmentError_, match=r"resource key\(s\) \['datasets', 'emr', 'lake', 'mongo', 'spark'\] are not bound"):
        load_environment("local", tmp_path)


def test_unset_nested_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLASSETS_SPARK_MASTER", raising=False)
    (tmp_path / "prod.yaml").write_text((ENVIRONMENTS / "prod.yaml").read_text())
    with pytest.raises(EnvironmentError_, match=r"prod.yaml: spark.spark_config.spark.master: environment variable"):
        load_environment("prod", tmp_path)


@pytest.mark.parametrize("env", ["local", "docker", "prod"])
def test_dagster_definitions_validate(env: str, tmp_path: Path) -> None:
    run_env = {**os.environ, **PROD_VARS, "MLASSETS_ENV": env, "DAGSTER_HOME": str(tmp_path)}
    result = dagster_cli(["definitions", "validate", "-m", "mlassets.definitions"], run_env, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "All code locations passed validation" in result.stdout + result.stderr


def test_unknown_env_fails_definitions_load(tmp_path: Path) -> None:
    result = dagster_cli(["definitions", "validate", "-m", "mlassets.definitions"],
                         {**os.environ, "MLASSETS_ENV": "nope", "DAGSTER_HOME": str(tmp_path)}, timeout=300)
    assert result.returncode != 0
    assert "unknown environment 'nope'" in result.stdout + result.stderr


def test_prod_runs_the_error_table_through_pipes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Same asset key, group and checks in every environment; only prod computes it on EMR (resource `emr`)."""
    from dagster import AssetKey

    from mlassets.definitions import iot_assets

    for name, value in PROD_VARS.items():
        monkeypatch.setenv(name, value)
    by_env = {env: next(a for a in iot_assets(env) if getattr(a, "key", None) == AssetKey("producer_error_counts"))
              for env in ("local", "prod")}
    assert "emr" in by_env["prod"].required_resource_keys and "spark" not in by_env["prod"].required_resource_keys
    assert "spark" in by_env["local"].required_resource_keys
    assert by_env["prod"].group_names_by_key == by_env["local"].group_names_by_key == {
        AssetKey("producer_error_counts"): "iot"}
    assert by_env["prod"].check_keys == by_env["local"].check_keys


@pytest.fixture
def user_shell(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """What a new user has: no MLASSETS_* variable, and a working directory that is not the project."""
    for name in [n for n in os.environ if n.startswith("MLASSETS_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_local_defaults_are_absolute_project_paths_from_any_directory(user_shell: Path) -> None:
    from mlassets.paths import PROJECT_ROOT
    from mlassets.resources.spark import MONGO_CONNECTOR_PACKAGE

    local = load_environment("local")
    assert local["datasets"].data_dir == str(PROJECT_ROOT / ".mlassets" / "data")
    assert local["lake"].root == str(PROJECT_ROOT / ".mlassets" / "lake")
    assert local["spark"].spark_config["spark.jars.ivy"] == str(PROJECT_ROOT / ".cache" / "ivy")
    assert local["emr"].spark_conf["spark.jars.ivy"] == str(PROJECT_ROOT / ".cache" / "ivy")
    # a lake on disk needs the MongoDB connector alone: no hadoop-aws and its 700 MB AWS SDK bundle
    assert local["spark"].spark_config["spark.jars.packages"] == MONGO_CONNECTOR_PACKAGE
    assert local["spark"].spark_config["spark.master"] == "local[*]"
    assert local["kafka"].bootstrap_servers == "127.0.0.1:9092"
    assert local["mongo"].uri == "mongodb://127.0.0.1:27017/"


def test_every_environment_loads_for_a_user_with_the_same_keys(user_shell: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIO_ROOT_USER", "minio")
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "minio-secret")
    local, docker = load_environment("local"), load_environment("docker")
    assert sorted(local) == sorted(docker)
    assert docker["datasets"].data_dir == "/data"
    assert docker["spark"].spark_config["spark.jars.ivy"] == "/opt/dagster/ivy"
    with pytest.raises(EnvironmentError_, match=r"prod.yaml: spark.spark_config.spark.master: environment variable"):
        load_environment("prod")  # prod has no defaults to fall back on: it names what is missing


@pytest.mark.parametrize("root", ["s3://bucket/lake", "S3://bucket/lake", "s3a://bucket/lake"])
def test_an_s3_lake_brings_the_s3a_package(user_shell: Path, monkeypatch: pytest.MonkeyPatch, root: str) -> None:
    from mlassets.resources.spark import S3A_PACKAGE

    monkeypatch.setenv("MLASSETS_LAKE_ROOT", root)
    local = load_environment("local")
    assert local["lake"].is_s3
    assert local["spark"].spark_config["spark.jars.packages"].split(",")[-1] == S3A_PACKAGE
    for name, value in PROD_VARS.items():
        monkeypatch.setenv(name, value)
    assert S3A_PACKAGE in load_environment("prod")["spark"].spark_config["spark.jars.packages"]
    assert S3A_PACKAGE in load_environment("docker")["spark"].spark_config["spark.jars.packages"]


def test_a_relative_setting_is_taken_from_the_project_root(user_shell: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from mlassets.paths import PROJECT_ROOT

    monkeypatch.setenv("MLASSETS_DATA_DIR", "elsewhere/data")
    monkeypatch.setenv("MLASSETS_IVY_DIR", str(user_shell / "ivy"))
    local = load_environment("local")
    assert local["datasets"].data_dir == str(PROJECT_ROOT / "elsewhere" / "data")
    assert local["spark"].spark_config["spark.jars.ivy"] == str(user_shell / "ivy")


# Per environment: the Mongo URI, S3 endpoint and keys that Spark gets, and the variables they are written with.
DERIVED = {
    "local": ("mongodb://127.0.0.1:27017/", "http://127.0.0.1:9000", "local", "local"),
    "docker": ("mongodb://mongo:27017/", "http://minio:9000", "minio", "minio-secret"),
    "prod": ("mongodb://db:27017/", None, None, None),  # AWS: S3A's default endpoint, the instance role's keys
}
S3A = {"endpoint": "spark.hadoop.fs.s3a.endpoint", "access": "spark.hadoop.fs.s3a.access.key",
       "secret": "spark.hadoop.fs.s3a.secret.key"}


@pytest.mark.parametrize("env", sorted(DERIVED))
def test_spark_gets_the_mongo_and_lake_values(env: str, user_shell: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIO_ROOT_USER", "minio")
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "minio-secret")
    if env == "prod":
        for name, value in PROD_VARS.items():
            monkeypatch.setenv(name, value)
    resources = load_environment(env)
    spark = resources["spark"].spark_config
    uri, endpoint, access, secret = DERIVED[env]
    assert spark["spark.mongodb.read.connection.uri"] == spark["spark.mongodb.write.connection.uri"] == uri
    assert spark.get(S3A["endpoint"]) == endpoint
    assert spark.get(S3A["access"]) == access and spark.get(S3A["secret"]) == secret
    if endpoint:  # MinIO: path-style, plain http, the lake's region
        assert spark["spark.hadoop.fs.s3a.path.style.access"] == "true"
        assert spark["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "false"
        assert spark["spark.hadoop.fs.s3a.endpoint.region"] == resources["lake"].region
    # each value is written once in the file: the variables of mongo and lake appear nowhere else
    text = (ENVIRONMENTS / f"{env}.yaml").read_text()
    raw = yaml.safe_load(text)
    for value in [raw["mongo"]["uri"], *(raw["lake"].get(k) for k in ("endpoint_url", "access_key_id",
                                                                      "secret_access_key"))]:
        if value is not None:
            assert text.count(value) == 1, value


def test_derived_secrets_stay_env_vars_in_their_resources(user_shell: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIO_ROOT_USER", "minio")
    monkeypatch.setenv("MINIO_ROOT_PASSWORD", "minio-secret")
    docker = load_environment("docker")
    assert docker["lake"].access_key_id == EnvVar("MINIO_ROOT_USER")
    assert docker["lake"].secret_access_key == EnvVar("MINIO_ROOT_PASSWORD")
    for name, value in PROD_VARS.items():
        monkeypatch.setenv(name, value)
    assert load_environment("prod")["mongo"].uri == EnvVar("MLASSETS_MONGO_URI")


def test_an_unset_variable_behind_a_derived_setting_is_named(user_shell: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in PROD_VARS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MLASSETS_MONGO_URI")
    expected = (r"prod.yaml: spark.spark_config.spark.mongodb.read.connection.uri: "
                r"environment variable MLASSETS_MONGO_URI \(from mongo.uri\) is not set")
    with pytest.raises(EnvironmentError_, match=expected):
        load_environment("prod")


def test_a_spark_setting_in_the_yaml_wins_over_the_derived_one(user_shell: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLASSETS_S3_ENDPOINT", "https://s3.example:443")
    text = (ENVIRONMENTS / "local.yaml").read_text().replace(
        "  spark_config:\n", "  spark_config:\n    spark.mongodb.write.connection.uri: mongodb://elsewhere:27017/\n")
    (tmp_path / "local.yaml").write_text(text)
    spark = load_environment("local", tmp_path)["spark"].spark_config
    assert spark["spark.mongodb.write.connection.uri"] == "mongodb://elsewhere:27017/"
    assert spark["spark.mongodb.read.connection.uri"] == "mongodb://127.0.0.1:27017/"
    assert spark[S3A["endpoint"]] == "https://s3.example:443"
    assert spark["spark.hadoop.fs.s3a.connection.ssl.enabled"] == "true"


# Where each environment names its executors' Python (README "How the executors get the project's Python").
EXECUTOR_PYTHON = {
    "local": {},  # a local master's workers run the driver's interpreter; a cluster master gets the packed archive
    "docker": {"spark.spark_config.spark.pyspark.python": "python3"},  # the user-code image's, on the Spark worker
    "prod": {"spark.spark_config.spark.pyspark.python": "${MLASSETS_SPARK_PYTHON:-python3}",  # executor pods' image
             "emr.python": "/usr/bin/python3.11"},  # bootstrap.sh's, on every EMR node
}
EXECUTOR_PYTHON_KEYS = ("spark.pyspark.python", "spark.archives", "spark.executorEnv.PYSPARK_PYTHON")


def _executor_python_settings(raw: dict) -> dict[str, str]:
    found = {"emr.python": raw["emr"]["python"]} if "python" in raw["emr"] else {}
    for section, conf in (("spark", "spark_config"), ("emr", "spark_conf")):
        for key in EXECUTOR_PYTHON_KEYS:
            if key in raw[section].get(conf, {}):
                found[f"{section}.{conf}.{key}"] = raw[section][conf][key]
    return found


@pytest.mark.parametrize("env", sorted(EXECUTOR_PYTHON))
def test_each_environment_names_its_executors_python_once_and_deploy_does_not(
        env: str, user_shell: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlassets.pipes.emr import BOOTSTRAP, SCRIPTS_DIR

    text = (ENVIRONMENTS / f"{env}.yaml").read_text()
    assert _executor_python_settings(yaml.safe_load(text)) == EXECUTOR_PYTHON[env]
    settings = "\n".join(line.split("#", 1)[0] for line in text.splitlines())  # the comments may name them
    for value in EXECUTOR_PYTHON[env].values():
        assert settings.count(value) == 1, value
    for name, value in {**PROD_VARS, "MLASSETS_SPARK_MASTER": "spark://127.0.0.1:17077"}.items():
        monkeypatch.setenv(name, value)
    resources = load_environment(env)
    # the Spark resource ships the packed environment only where the file names no executor Python
    assert resources["spark"].ships_environment() is (env == "local")
    if env == "prod":
        emr = resources["emr"]
        args = emr.run_job_flow_params("producer_error_counts.py", [], "x")["Steps"][0]["HadoopJarStep"]["Args"]
        assert f"spark.pyspark.python={emr.python}" in args
        assert f"{Path(emr.python).name} -m pip install" in (SCRIPTS_DIR / BOOTSTRAP).read_text()
    # the deploy files take the setting from the environment's YAML instead of repeating it
    for path in (REPO / "deploy").rglob("*"):
        if path.is_file():
            assert not any(k in path.read_text(errors="replace") for k in (*EXECUTOR_PYTHON_KEYS, "PYSPARK_PYTHON")), path


def test_the_docker_and_k8s_instances_limit_the_spark_pool_like_the_projects() -> None:
    """Steps in pool `spark` (the assets that start a Spark driver) are limited across runs by the instance's pools,
    in docker as in the project's dagster.yaml (one slot), on Kubernetes with the chart's `concurrency` values; no run
    tag limit is left (no run carries one)."""
    from mlassets.automation import SPARK_POOL

    project = yaml.safe_load((REPO / "dagster.yaml").read_text())["concurrency"]["pools"]
    docker_text = (REPO / "deploy" / "docker" / "dagster.yaml").read_text()
    values_text = (REPO / "deploy" / "k8s" / "values.yaml").read_text()
    docker, values = yaml.safe_load(docker_text), yaml.safe_load(values_text)
    assert docker["concurrency"]["pools"] == project == {"granularity": "op", "default_limit": 1}
    k8s = values["concurrency"]
    assert k8s["enabled"] is True and k8s["pools"] == {"granularity": "op", "defaultLimit": 2}
    # the chart refuses run limits in both places: they live under `concurrency.runs` only
    assert "config" not in docker["run_coordinator"] and "config" not in values["dagsterDaemon"]["runCoordinator"]
    assert docker["concurrency"]["runs"]["max_concurrent_runs"] >= 1 and k8s["runs"]["maxConcurrentRuns"] >= 1
    for text in (docker_text, values_text):
        assert "tag_concurrency_limits" not in text and "tagConcurrencyLimits" not in text
        assert f'pool "{SPARK_POOL}"' in text  # the comment says which pool the limit is for
