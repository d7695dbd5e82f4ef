"""EMR through Pipes: the RunJobFlow request against moto's EMR, and a Pipes round trip on a fake cluster."""

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pyspark
import pytest
from dagster import Failure, materialize

from mlassets.pipes.assets import producer_error_counts_pipes
from mlassets.pipes.emr import SCRIPTS_DIR, EMRPipesResource
from mlassets.resources import LakeResource, MongoResource
from mlassets.stack import StackSettings
from mlassets_tests.assets_tests.iot_tests.test_error_tables import RECORDS

REPO = Path(__file__).resolve().parents[2]
AWS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}


class FakeEMRCluster:
    """moto's EMR client, except that a cluster really runs its spark-submit steps here, in local mode.

    What EMR would do: fetch the s3:// script, export the spark-env variables of Configurations to the driver
    (the Pipes context among them), run the step, mark it COMPLETED or FAILED and terminate the cluster.
    """

    def __init__(self, emr: Any, s3: Any, workdir: Path, env: dict[str, str]) -> None:
        self._emr, self._s3, self.workdir, self.env = emr, s3, workdir, env
        self.params: dict[str, Any] = {}
        self.exit_codes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._emr, name)

    def run_job_flow(self, **params: Any) -> dict:
        self.params = params
        return self._emr.run_job_flow(**params)

    def get_waiter(self, name: str) -> Any:
        if name != "cluster_terminated":
            return self._emr.get_waiter(name)
        fake = self

        class Waiter:
            def wait(self, ClusterId: str, **_: Any) -> None:  # noqa: N803 - boto3's parameter name
                fake._run_steps(ClusterId)
        return Waiter()

    def _run_steps(self, cluster_id: str) -> None:
        exports = next(c["Configurations"][0]["Properties"] for c in self.params["Configurations"]
                       if c["Classification"] == "spark-env")
        for step in self.params["Steps"]:
            args = list(step["HadoopJarStep"]["Args"])
            assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"]
            bucket, _, key = args[-1][len("s3://"):].partition("/")
            script = self.workdir / Path(key).name
            self._s3.download_file(bucket, key, str(script))
            # this machine's interpreter (with mlassets) stands in for the one bootstrap.sh installs
            options = args[3:-1]
            python = options.index("spark.pyspark.python=/usr/bin/python3.11")
            options[python] = f"spark.pyspark.python={sys.executable}"
            argv = [str(Path(pyspark.__file__).parent / "bin" / "spark-submit"), "--master", "local[2]",
                    *options, str(script)]
            master_env = dict(a[len("spark.yarn.appMasterEnv."):].split("=", 1) for a in args
                              if a.startswith("spark.yarn.appMasterEnv."))
            env = {**os.environ, **exports, **master_env, **self.env, "PYSPARK_PYTHON": sys.executable}
            self.exit_codes.append(subprocess.run(argv, env=env, cwd=self.workdir).returncode)
        self._emr.terminate_job_flows(JobFlowIds=[cluster_id])

    def describe_cluster(self, ClusterId: str) -> dict:  # noqa: N803
        response = self._emr.describe_cluster(ClusterId=ClusterId)
        if any(self.exit_codes):
            response["Cluster"]["Status"]["State"] = "TERMINATED_WITH_ERRORS"
        return response

    def list_steps(self, ClusterId: str) -> dict:  # noqa: N803
        response = self._emr.list_steps(ClusterId=ClusterId)
        for step, code in zip(response["Steps"], reversed(self.exit_codes)):
            step["Status"]["State"] = "COMPLETED" if code == 0 else "FAILED"
            if code:
                step["Status"]["FailureDetails"] = {"Message": f"spark-submit exited {code}"}
        return response


@pytest.fixture
def aws(stack: StackSettings, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Every AWS client of this process and of the fake cluster's driver talks to the moto server."""
    env = {**AWS, "AWS_ENDPOINT_URL": stack.s3_endpoint}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def emr(aws: dict[str, str], stack: StackSettings, unique: str) -> EMRPipesResource:
    bucket = f"mlassets-emr-{unique}"
    boto3.client("s3", endpoint_url=stack.s3_endpoint).create_bucket(Bucket=bucket)
    return EMRPipesResource(
        launcher="emr", endpoint_url=stack.s3_endpoint, scripts_uri=f"s3://{bucket}/emr",
        pipes_bucket=bucket, mongo_secret_id=f"mlassets/mongo-{unique}", core_instance_count=3,
        spark_conf={"spark.jars.ivy": str(REPO / ".cache" / "ivy"), "spark.driver.host": "127.0.0.1",
                    "spark.driver.bindAddress": "127.0.0.1", "spark.ui.enabled": "false",
                    # the test's MongoDB is FerretDB (no $collStats), as in resources/local.yaml
                    "spark.mongodb.read.partitioner":
                        "com.mongodb.spark.sql.connector.read.partitioner.SinglePartitionPartitioner"},
    )


def test_run_job_flow_request_is_accepted_by_emr_and_points_at_uploaded_files(emr: EMRPipesResource,
                                                                               stack: StackSettings) -> None:
    uris = emr.upload_scripts(wheel=REPO / "pyproject.toml")  # any file stands in for the wheel here
    assert uris == [emr.script_uri(n) for n in ("bootstrap.sh", "producer_error_counts.py", emr.wheel_name)]
    params = emr.run_job_flow_params("producer_error_counts.py", ["--flag"], "producer_error_counts")
    client = boto3.client("emr", endpoint_url=stack.s3_endpoint)
    cluster_id = client.run_job_flow(**params)["JobFlowId"]  # botocore validates the request against the API model
    cluster = client.describe_cluster(ClusterId=cluster_id)["Cluster"]
    assert cluster["ReleaseLabel"] == "emr-7.5.0" and cluster["AutoTerminate"] is True
    assert [a["Name"] for a in cluster["Applications"]] == ["Spark"]
    (bootstrap,) = client.list_bootstrap_actions(ClusterId=cluster_id)["BootstrapActions"]
    (step,) = client.list_steps(ClusterId=cluster_id)["Steps"]
    assert bootstrap["ScriptPath"] == emr.script_uri("bootstrap.sh")
    assert bootstrap["Args"] == [emr.script_uri(emr.wheel_name)]
    args = step["Config"]["Args"]
    assert args[:3] == ["spark-submit", "--deploy-mode", "cluster"] and args[-2:] == [
        emr.script_uri("producer_error_counts.py"), "--flag"]
    assert step["ActionOnFailure"] == "TERMINATE_CLUSTER"
    s3 = boto3.client("s3", endpoint_url=stack.s3_endpoint)
    for uri in (bootstrap["ScriptPath"], *bootstrap["Args"], args[-2]):  # everything the cluster fetches exists
        bucket, _, key = uri[len("s3://"):].partition("/")
        s3.head_object(Bucket=bucket, Key=key)
    groups = {g["InstanceGroupType"]: g for g in client.list_instance_groups(ClusterId=cluster_id)["InstanceGroups"]}
    assert groups["CORE"]["RequestedInstanceCount"] == 3
    assert "spark.pyspark.python=/usr/bin/python3.11" in args
    assert "spark.yarn.appMasterEnv.MLASSETS_PIPES_MESSAGES=s3" in args


def test_unknown_script_and_missing_settings_are_named(emr: EMRPipesResource) -> None:
    with pytest.raises(Failure, match="no script 'nope.py'"):
        emr.run_job_flow_params("nope.py", [], "x")
    with pytest.raises(Failure, match="scripts_uri is not set"):
        EMRPipesResource(launcher="emr").script_uri("bootstrap.sh")
    assert {p.name for p in SCRIPTS_DIR.iterdir()} >= {"bootstrap.sh", "producer_error_counts.py"}
    # the scripts are package data: the image's copy of the package holds them (the wheel: deploy_tests/test_wheel.py)
    assert SCRIPTS_DIR.parent == REPO / "mlassets" / "pipes"
    assert "COPY mlassets ./mlassets" in (REPO / "deploy" / "docker" / "Dockerfile").read_text()


@pytest.fixture
def database(stack: StackSettings, unique: str) -> str:
    name = f"image_database_{unique}"
    MongoResource(uri=stack.mongo_uri).client()[name]["inferences"].insert_many([dict(r) for r in RECORDS])
    return name


def _materialize(emr: EMRPipesResource, fake: FakeEMRCluster, database: str, lake: Path, mongo_uri: str):
    class Launcher(EMRPipesResource):
        def run(self, context, script, extras, env=None, emr_client=None):  # the fake cluster as EMR client
            return super().run(context, script, extras, env, emr_client=fake)

    return materialize(
        [producer_error_counts_pipes], partition_key="2026-11-20",
        run_config={"ops": {"producer_error_counts": {"config": {"database": database}}}},
        resources={"emr": Launcher(**emr.model_dump()), "lake": LakeResource(root=str(lake)),
                   "mongo": MongoResource(uri=mongo_uri)},
        raise_on_error=False,
    )


def test_pipes_round_trip_on_a_fake_emr_cluster(emr: EMRPipesResource, aws: dict[str, str], stack: StackSettings,
                                                database: str, tmp_path: Path) -> None:
    emr.upload_scripts()
    boto3.client("secretsmanager").create_secret(Name=emr.mongo_secret_id, SecretString=stack.mongo_uri)
    fake = FakeEMRCluster(boto3.client("emr"), boto3.client("s3"), tmp_path, aws)
    # the Dagster side gets no MongoDB URI that works: the driver reads it from Secrets Manager
    result = _materialize(emr, fake, database, tmp_path / "lake", "mongodb://nowhere.invalid:1/")
    assert fake.exit_codes == [0]
    assert result.success
    (materialization,) = result.asset_materializations_for_node("producer_error_counts")
    assert materialization.metadata["dagster/row_count"].value == 2
    # the fixture's records carry no tallies: the day's 6 are read one by one on the cluster's Spark
    assert materialization.metadata["records_counted_by_tallies"].value == 0
    assert materialization.metadata["records_read_one_by_one"].value == 6
    assert {c.check_name: c.passed for c in result.get_asset_check_evaluations()} == {
        "totals_match_records": True, "error_rate_in_bounds": True}
    rows = LakeResource(root=str(tmp_path / "lake")).read_parquet("producer_error_counts", "2026-11-20")
    assert rows[["producer_id", "wrong_inference_count", "total_inferences", "pending_count"]].values.tolist() == [
        ["producer-1", 1, 3, 1], ["producer-2", 1, 2, 0]]
    # the Pipes context reached the driver through the cluster's configuration, as PipesEMRClient injects it
    defaults = next(c for c in fake.params["Configurations"] if c["Classification"] == "spark-defaults")
    assert "spark.yarn.appMasterEnv.DAGSTER_PIPES_CONTEXT" in defaults["Properties"]
    spark_env = next(c for c in fake.params["Configurations"] if c["Classification"] == "spark-env")
    assert "DAGSTER_PIPES_MESSAGES" in spark_env["Configurations"][0]["Properties"]
    tags = {t["Key"]: t["Value"] for t in fake.params["Tags"]}
    assert tags["mlassets/asset"] == "producer_error_counts"
    assert any(key.startswith("dagster/") for key in tags), tags  # PipesEMRClient's remote invocation info


def test_a_failed_step_fails_the_asset(emr: EMRPipesResource, aws: dict[str, str], database: str,
                                       tmp_path: Path) -> None:
    emr.upload_scripts()  # no secret created: the driver fails reading it
    fake = FakeEMRCluster(boto3.client("emr"), boto3.client("s3"), tmp_path, aws)
    result = _materialize(emr, fake, database, tmp_path / "lake", "mongodb://nowhere.invalid:1/")
    assert fake.exit_codes and fake.exit_codes[0] != 0
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert "ended TERMINATED_WITH_ERRORS" in str(failure.event_specific_data.error)
    assert "step producer_error_counts FAILED" in str(failure.event_specific_data.error)
