"""The Spark session resource: dagster-pyspark's lazily created session, configured per environment."""

import os
import sys

from dagster_pyspark import LazyPySparkResource


class SparkResource(LazyPySparkResource):
    """A lazily created Spark session; on a `local` master the Python workers run the driver's interpreter."""

    def _init_session(self) -> None:
        # PySpark starts its Python workers with $PYSPARK_PYTHON or else `python3` from PATH, which is not the
        # project's virtualenv; a local master's workers share the driver's machine, so its interpreter is right.
        # Clusters set PYSPARK_PYTHON (or spark.pyspark.python) themselves and are left alone.
        if str(self.spark_config.get("spark.master", "local")).startswith("local"):
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        super()._init_session()


__all__ = ["SparkResource"]
