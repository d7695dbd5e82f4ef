"""deploy/k8s: Helm values for the official Dagster chart and the Spark-on-Kubernetes settings, checked for shape."""

import re
import tomllib
from pathlib import Path

import pytest
import yaml

from mlassets.environments import load_environment

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "deploy" / "k8s"
PROD_YAML = REPO / "mlassets" / "resources" / "prod.yaml"
# The keys the chart's schema (helm/dagster/schema, K8sRunLauncherConfig and UserDeployment) accepts that we use.
RUN_LAUNCHER_KEYS = {"image", "imagePullPolicy", "jobNamespace", "loadInclusterConfig", "kubeconfigFile",
                     "envConfigMaps", "envSecrets", "envVars", "volumeMounts", "volumes", "labels",
                     "failPodOnRunFailure", "runK8sConfig", "resources", "securityContext", "schedulerName"}
USER_DEPLOYMENT_KEYS = {"name", "image", "port", "dagsterApiGrpcArgs", "codeServerArgs", "includeConfigInLaunchedRuns",
                        "env", "envConfigMaps", "envSecrets", "annotations", "nodeSelector", "affinity", "tolerations",
                        "podSecurityContext", "securityContext", "resources", "livenessProbe", "readinessProbe",
                        "startupProbe", "labels", "volumeMounts", "volumes", "schedulerName"}


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load((K8S / "values.yaml").read_text())


@pytest.fixture(scope="module")
def manifests() -> dict[tuple[str, str], dict]:
    docs = [d for d in yaml.safe_load_all((K8S / "spark.yaml").read_text()) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


@pytest.fixture(scope="module")
def deployment(values: dict) -> dict:
    (only,) = values["dagster-user-deployments"]["deployments"]
    return only


@pytest.fixture(scope="module")
def spark_defaults(manifests: dict) -> dict[str, str]:
    text = manifests["ConfigMap", "mlassets-spark-conf"]["data"]["spark-defaults.conf"]
    pairs = [line.split(None, 1) for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert all(len(p) == 2 for p in pairs), pairs
    return {k: v.strip() for k, v in pairs}


def env_of(deployment: dict) -> dict[str, dict]:
    return {e["name"]: e for e in deployment["env"]}


def test_chart_version_is_the_pinned_dagster() -> None:
    pins = dict(d.split("==") for d in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
                if "==" in d)
    assert re.search(r"helm upgrade --install dagster dagster/dagster --version (\S+)",
                     (K8S / "values.yaml").read_text()).group(1) == pins["dagster"]


def test_user_deployment_serves_the_code_location(deployment: dict) -> None:
    assert set(deployment) <= USER_DEPLOYMENT_KEYS, set(deployment) - USER_DEPLOYMENT_KEYS
    assert deployment["codeServerArgs"] == ["-m", "mlassets.definitions"]
    assert isinstance(deployment["image"]["tag"], str)  # the chart's schema wants a string
    assert deployment["includeConfigInLaunchedRuns"] == {"enabled": True}
    env = env_of(deployment)
    assert env["MLASSETS_ENV"]["value"] == "prod"
    assert env["SPARK_LOCAL_IP"]["valueFrom"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert all(("value" in e) != ("valueFrom" in e) for e in deployment["env"])


def test_every_prod_variable_comes_from_values_or_the_secret(deployment: dict) -> None:
    needed = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", PROD_YAML.read_text()))
    secret = yaml.safe_load((K8S / "secret.example.yaml").read_text())
    assert [s["name"] for s in deployment["envSecrets"]] == [secret["metadata"]["name"]]
    assert set(secret["stringData"].values()) == {""}  # an example, never a filled-in secret
    provided = set(secret["stringData"]) | set(env_of(deployment))
    assert needed <= provided, needed - provided
    assert not set(secret["stringData"]) & set(env_of(deployment))


def test_run_launcher_runs_pods_that_may_start_executors(values: dict, manifests: dict) -> None:
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert set(launcher) <= RUN_LAUNCHER_KEYS, set(launcher) - RUN_LAUNCHER_KEYS
    account = launcher["runK8sConfig"]["podSpecConfig"]["serviceAccountName"]
    assert ("ServiceAccount", account) in manifests
    binding = next(d for (kind, _), d in manifests.items() if kind == "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    role = manifests["Role", binding["roleRef"]["name"]]
    pods = next(rule for rule in role["rules"] if "pods" in rule["resources"])
    assert {"create", "delete", "watch", "list"} <= set(pods["verbs"])
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False


def test_spark_on_kubernetes_settings_match_the_deployment(values: dict, deployment: dict, manifests: dict,
                                                           spark_defaults: dict[str, str]) -> None:
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    env = env_of(deployment)
    assert env["MLASSETS_SPARK_MASTER"]["value"].startswith("k8s://https://")
    assert spark_defaults["spark.submit.deployMode"] == "client"
    assert spark_defaults["spark.kubernetes.namespace"] == launcher["jobNamespace"]
    image = deployment["image"]
    assert spark_defaults["spark.kubernetes.container.image"] == f"{image['repository']}:{image['tag']}"
    assert (spark_defaults["spark.kubernetes.authenticate.driver.serviceAccountName"]
            == launcher["runK8sConfig"]["podSpecConfig"]["serviceAccountName"])
    # pyspark reads spark-defaults.conf from $SPARK_CONF_DIR: the ConfigMap must be mounted exactly there
    volume = next(v for v in deployment["volumes"] if v.get("configMap", {}).get("name") == "mlassets-spark-conf")
    mount = next(m for m in deployment["volumeMounts"] if m["name"] == volume["name"])
    assert mount["mountPath"] == env["SPARK_CONF_DIR"]["value"]
    assert all(k.startswith("spark.") for k in spark_defaults)
    for key in ("spark.executor.instances", "spark.executor.cores", "spark.driver.port", "spark.blockManager.port"):
        assert int(spark_defaults[key]) > 0, key


def test_prod_spark_config_and_the_k8s_defaults_make_one_consistent_session_config(
        monkeypatch: pytest.MonkeyPatch, deployment: dict, spark_defaults: dict[str, str]) -> None:
    for name in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)\}", PROD_YAML.read_text()):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("MLASSETS_SPARK_MASTER", env_of(deployment)["MLASSETS_SPARK_MASTER"]["value"])
    prod = load_environment("prod")["spark"].spark_config
    assert prod["spark.master"].startswith("k8s://")
    clashes = {k for k in set(prod) & set(spark_defaults) if str(prod[k]) != spark_defaults[k]}
    assert not clashes, clashes
