"""The Spark session resource: dagster-pyspark's lazily created session, configured per environment."""

import os
import sys

from dagster_pyspark import LazyPySparkResource

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
    """A lazily created Spark session; on a `local` master the Python workers run the driver's interpreter."""

    def _init_session(self) -> None:
        # PySpark starts its Python workers with $PYSPARK_PYTHON or else `python3` from PATH, which is not the
        # project's virtualenv; a local master's workers share the driver's machine, so its interpreter is right.
        # Clusters set PYSPARK_PYTHON (or spark.pyspark.python) themselves and are left alone.
        if str(self.spark_config.get("spark.master", "local")).startswith("local"):
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        super()._init_session()


__all__ = ["MONGO_CONNECTOR_PACKAGE", "S3A_PACKAGE", "SparkResource", "with_s3a"]
