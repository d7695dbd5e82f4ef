"""The resource that runs the Spark scripts of mlassets/pipes/scripts through Pipes: spark-submit here, or EMR.

The scripts are package data: an installed wheel submits its own copy.
"""

import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, ConfigurableResource, Failure, PipesSubprocessClient
from dagster._core.pipes.client import PipesClientCompletedInvocation
from pydantic import Field

from mlassets.resources.spark import MONGO_CONNECTOR_PACKAGE, S3A_PACKAGE

SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"  # spark-submit takes a file: a real path
BOOTSTRAP = "bootstrap.sh"
LOCAL_PACKAGES = f"{MONGO_CONNECTOR_PACKAGE},{S3A_PACKAGE}"


class EMRPipesResource(ConfigurableResource):
    """Where the Spark scripts run: `subprocess` (spark-submit here) or `emr` (one transient cluster per run)."""

    launcher: str = Field(default="subprocess", description="`subprocess`: spark-submit on this machine; "
                                                            "`emr`: a transient EMR cluster through PipesEMRClient.")
    spark_master: str = Field(default="local[2]", description="subprocess launcher: spark-submit's --master.")
    spark_packages: str = Field(default=LOCAL_PACKAGES, description="spark-submit --packages (Scala 2.12 builds "
                                                                    "on EMR 7, whose Spark is 3.5).")
    spark_conf: dict[str, str] = Field(default_factory=dict, description="Extra --conf key=value for spark-submit.")
    region: str = Field(default="us-east-1", description="AWS region of EMR, S3 and Secrets Manager.")
    endpoint_url: str | None = Field(default=None, description="AWS endpoint override (moto in tests); None for AWS.")
    scripts_uri: str | None = Field(default=None, description="emr: s3://bucket/prefix holding the scripts "
                                                              "(upload_scripts) and the mlassets wheel.")
    wheel_name: str = Field(default="mlassets-0.1.0-py3-none-any.whl",
                            description="emr: the wheel below scripts_uri that bootstrap.sh installs.")
    log_uri: str | None = Field(default=None, description="emr: s3:// prefix for the cluster and step logs.")
    pipes_bucket: str | None = Field(default=None, description="emr: bucket where the script writes Pipes messages.")
    mongo_secret_id: str | None = Field(default=None, description="emr: Secrets Manager id of the MongoDB URI.")
    release_label: str = Field(default="emr-7.5.0", description="emr: EMR release (Spark 3.5, Python 3.11 via dnf).")
    instance_type: str = Field(default="m5.xlarge", description="emr: EC2 type of the primary and core nodes.")
    core_instance_count: int = Field(default=2, description="emr: number of core nodes (executors).")
    service_role: str = Field(default="EMR_DefaultRole", description="emr: the EMR service role.")
    job_flow_role: str = Field(default="EMR_EC2_DefaultRole", description="emr: the EC2 instance profile.")
    subnet_id: str | None = Field(default=None, description="emr: the subnet of the cluster; None = default VPC.")
    python: str = Field(default="/usr/bin/python3.11", description="emr: the Python that runs the driver/executors.")

    def _client(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region, endpoint_url=self.endpoint_url)

    def script_uri(self, name: str) -> str:
        """The s3:// URI of a script (or the wheel) after upload_scripts."""
        if not self.scripts_uri:
            raise Failure("emr.scripts_uri is not set: it is the s3:// prefix where the scripts are uploaded")
        return f"{self.scripts_uri.rstrip('/')}/{name}"

    def upload_scripts(self, wheel: Path | None = None) -> list[str]:
        """Upload the scripts (and the mlassets wheel, when given) below scripts_uri; returns the URIs."""
        s3, uris = self._client("s3"), []
        files = sorted(p for p in SCRIPTS_DIR.iterdir() if p.suffix in (".py", ".sh"))
        for path in files + ([wheel] if wheel else []):
            uri = self.script_uri(self.wheel_name if path == wheel else path.name)
            bucket, _, key = uri[len("s3://"):].partition("/")
            s3.upload_file(str(path), bucket, key)
            uris.append(uri)
        return uris

    def run_job_flow_params(self, script: str, args: list[str], name: str,
                            tags: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The RunJobFlow request of one transient cluster: bootstrap, one spark-submit step, then terminate."""
        if not (SCRIPTS_DIR / script).is_file():
            raise Failure(f"no script {script!r} in {SCRIPTS_DIR}")
        # The driver runs in the YARN application master (cluster mode). Its settings go on the command line, not
        # into Configurations: dagster-aws 0.29.27 merges its Pipes variables into an existing spark-defaults or
        # spark-env classification incorrectly and drops them, so those two classifications are left to it.
        conf = {"spark.sql.session.timeZone": "UTC", "spark.pyspark.python": self.python,
                "spark.yarn.appMasterEnv.MLASSETS_PIPES_MESSAGES": "s3", **self.spark_conf}
        submit = ["spark-submit", "--deploy-mode", "cluster", "--packages", self.spark_packages]
        for key, value in sorted(conf.items()):
            submit += ["--conf", f"{key}={value}"]
        instances: dict[str, Any] = {
            "InstanceGroups": [
                {"Name": "primary", "InstanceRole": "MASTER", "InstanceType": self.instance_type, "InstanceCount": 1},
                {"Name": "core", "InstanceRole": "CORE", "InstanceType": self.instance_type,
                 "InstanceCount": self.core_instance_count},
            ],
            "KeepJobFlowAliveWhenNoSteps": False,
            "TerminationProtected": False,
        }
        if self.subnet_id:
            instances["Ec2SubnetId"] = self.subnet_id
        params: dict[str, Any] = {
            "Name": f"mlassets-{name}",
            "ReleaseLabel": self.release_label,
            "Applications": [{"Name": "Spark"}],
            "Instances": instances,
            "BootstrapActions": [{"Name": "mlassets packages", "ScriptBootstrapAction": {
                "Path": self.script_uri(BOOTSTRAP), "Args": [self.script_uri(self.wheel_name)]}}],
            "Steps": [{"Name": name, "ActionOnFailure": "TERMINATE_CLUSTER", "HadoopJarStep": {
                "Jar": "command-runner.jar", "Args": [*submit, self.script_uri(script), *args]}}],
            "Configurations": [],  # PipesEMRClient adds spark-defaults/spark-env with the Pipes context
            "ServiceRole": self.service_role,
            "JobFlowRole": self.job_flow_role,
            "VisibleToAllUsers": True,
            "Tags": [{"Key": k, "Value": v} for k, v in {"mlassets/asset": name, **(tags or {})}.items()],
        }
        if self.log_uri:
            params["LogUri"] = self.log_uri
        return params

    def run(self, context: AssetExecutionContext, script: str, extras: dict[str, Any],
            env: Mapping[str, str] | None = None, emr_client: Any = None) -> PipesClientCompletedInvocation:
        """Run a script of SCRIPTS_DIR through Pipes and return what it reported; a failed step raises Failure."""
        extras = {"region": self.region, **extras}
        if self.launcher == "subprocess":
            return self._run_subprocess(context, script, extras, env or {})
        if self.launcher == "emr":
            return self._run_emr(context, script, extras, emr_client or self._client("emr"))
        raise Failure(f"emr.launcher must be `subprocess` or `emr`, not {self.launcher!r}")

    def _run_subprocess(self, context: AssetExecutionContext, script: str, extras: dict[str, Any],
                        env: Mapping[str, str]) -> PipesClientCompletedInvocation:
        import pyspark

        spark_submit = Path(pyspark.__file__).parent / "bin" / "spark-submit"
        command = [str(spark_submit), "--master", self.spark_master, "--packages", self.spark_packages]
        for key, value in sorted({"spark.sql.session.timeZone": "UTC", **self.spark_conf}.items()):
            command += ["--conf", f"{key}={value}"]
        command.append(str(SCRIPTS_DIR / script))
        java = shutil.which("java")
        if java is None:
            raise Failure("spark-submit needs Java 17 on PATH (e.g. `apt-get install openjdk-17-jre-headless`)")
        return PipesSubprocessClient().run(
            context=context, command=command, extras=extras,
            env={"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, **env},
        )

    def _run_emr(self, context: AssetExecutionContext, script: str, extras: dict[str, Any],
                 emr_client: Any) -> PipesClientCompletedInvocation:
        from dagster_aws.pipes import PipesEMRClient, PipesS3MessageReader

        if not self.pipes_bucket:
            raise Failure("emr.pipes_bucket is not set: the bucket where the script writes its Pipes messages")
        name = context.assets_def.key.to_user_string()
        client = PipesEMRClient(
            client=emr_client,
            message_reader=PipesS3MessageReader(bucket=self.pipes_bucket, client=self._client("s3"),
                                                include_stdio_in_messages=True),
            wait_for_s3_logs_seconds=0,
        )
        extras = {**extras, "mongo_secret_id": self.mongo_secret_id}
        invocation = client.run(context=context, run_job_flow_params=self.run_job_flow_params(script, [], name),
                                extras=extras)
        self.raise_for_failed_cluster(emr_client, str(invocation.metadata["AWS EMR Cluster ID"].value))
        return invocation

    @staticmethod
    def raise_for_failed_cluster(emr_client: Any, cluster_id: str) -> None:
        """Raise Failure when the cluster ended with errors or a step did not complete.

        dagster-aws 0.29.27's PipesEMRClient compares the state string with enum members and so never sees a
        failed cluster; this check is what turns a failed step into a failed asset.
        """
        state = emr_client.describe_cluster(ClusterId=cluster_id)["Cluster"]["Status"]
        steps = emr_client.list_steps(ClusterId=cluster_id)["Steps"]
        failed = [s for s in steps if s["Status"]["State"] != "COMPLETED"]
        if state["State"] == "TERMINATED_WITH_ERRORS" or failed:
            details = "; ".join(f"step {s['Name']} {s['Status']['State']}: "
                                f"{s['Status'].get('FailureDetails', {}).get('Message', 'no failure details')}"
                                for s in failed)
            raise Failure(f"EMR cluster {cluster_id} ended {state['State']} "
                          f"({state.get('StateChangeReason', {}).get('Message', '')}); {details}",
                          metadata={"cluster_id": cluster_id})
