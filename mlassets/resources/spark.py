"""The Spark session resource: dagster-pyspark's lazily created session, configured per environment."""

import os
import sys

from dagster_pyspark import LazyPySparkResource
from dagster_pyspark.resources import spark_session_from_config
from pydantic import PrivateAttr
from pyspark import SparkContext
from pyspark.sql import SparkSession

from mlassets.stack import executor_env
from mlassets.stack.executor_env import LEAN

MONGO_CONNECTOR_PACKAGE = "org.mongodb.spark:mongo-spark-connector_2.13:10.5.0"
# hadoop-aws must match the Hadoop inside pyspark; it pulls the AWS SDK bundle (about 700 MB), so a session gets it
# only where it reads or writes s3a:// (see with_s3a).
S3A_PACKAGE = "org.apache.hadoop:hadoop-aws:3.5.0"
PACKAGES_KEY = "spark.jars.packages"


def with_s3a(spark_config: dict[str, str]) -> dict[str, str]:
    """The Spark settings with the S3A filesystem's package added to `spark.jars.packages`."""
    packages = [p for p in str(spark_config.get(PACKAGES_KEY, "")).split(",") if p]
    if S3A_PACKAGE in packages:
        return dict(spark_config)
    return {**spark_config, PACKAGES_KEY: ",".join([*packages, S3A_PACKAGE])}


class SparkResource(LazyPySparkResource):
    """A lazily created Spark session; on a `local` master the Python workers run the driver's interpreter, on a
    cluster the executors run a packed copy of the project's environment unless the settings name their Python."""

    _executor_flavor: str = PrivateAttr(default=LEAN)

    def ships_environment(self) -> bool:
        """True where the session ships the packed executor environment: a cluster master whose settings name no
        executor Python (docker, Kubernetes and EMR name their image's or bootstrap's)."""
        config = self.spark_config
        return (not str(config.get("spark.master", "local")).startswith("local")
                and not {"spark.archives", "spark.pyspark.python"} & set(config))

    def session_for(self, flavor: str) -> SparkSession:
        """The session, whose executors on a cluster get the `flavor` environment (TENSORFLOW for Keras UDFs)."""
        if self._spark_session is None:
            self._executor_flavor = flavor
        elif not executor_env.contains(self._executor_flavor, flavor) and self.ships_environment():
            raise RuntimeError(
                f"this run's Spark session ships the {self._executor_flavor!r} executor environment, not {flavor!r}: "
                "run the asset in its own step (the default multiprocess executor) or set spark.archives and "
                "spark.pyspark.python in the spark resource")
        return self.spark_session

    def _init_session(self) -> None:
        if self._spark_session is not None:
            return
        config = dict(self.spark_config)
        if str(config.get("spark.master", "local")).startswith("local"):
            # PySpark starts its Python workers with $PYSPARK_PYTHON or else `python3` from PATH, which is not the
            # project's virtualenv; a local master's workers share the driver's machine, so its interpreter is right.
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            super()._init_session()
            return
        active = SparkContext._active_spark_context
        if active is not None and active.master != config["spark.master"]:
            # getOrCreate would hand back the running context and quietly drop the cluster's settings.
            raise RuntimeError(
                f"this process already runs a Spark context on {active.master!r}; a session on "
                f"{config['spark.master']!r} needs a process of its own or that context stopped first")
        if self.ships_environment():
            config.update(executor_env.spark_settings(self._executor_flavor))
        # A session created in-process takes its executors' Python from $PYSPARK_PYTHON when the context starts, not
        # from spark.pyspark.python (spark-submit translates one into the other): set it meanwhile only, so that a
        # later local session gets the driver's interpreter again.
        before = os.environ.get("PYSPARK_PYTHON")
        if "spark.pyspark.python" in config:
            os.environ["PYSPARK_PYTHON"] = str(config["spark.pyspark.python"])
        try:
            self._spark_session = spark_session_from_config(config)
        finally:
            if before is None:
                os.environ.pop("PYSPARK_PYTHON", None)
            else:
                os.environ["PYSPARK_PYTHON"] = before
        if self.ships_environment():
            self._spark_session.sparkContext.addPyFile(str(executor_env.project_zip()))


__all__ = ["MONGO_CONNECTOR_PACKAGE", "S3A_PACKAGE", "SparkResource", "with_s3a"]
