"""producer_error_counts computed on a Spark cluster (EMR) and reported back to Dagster through Pipes.

Submitted by mlassets/pipes/emr.py as `spark-submit <this file>` (on EMR a copy uploaded to S3, the nodes holding the
mlassets wheel that bootstrap.sh installs); the counting and the checks are the asset's, mlassets.tables.error_tables.
The Pipes context (partition window, extras) comes from the environment EMR passes to the driver, messages go to S3
(or to the file of a local run). Extras: database, lake_root, lake_endpoint_url, region and, on EMR, mongo_secret_id
(a Secrets Manager secret holding the MongoDB URI, so that no credential is written into the cluster's configuration;
local runs read MLASSETS_MONGO_URI from their environment).
"""

import datetime as dt
import os

import boto3
from dagster_pipes import PipesDefaultMessageWriter, PipesS3MessageWriter, open_dagster_pipes
from pymongo import MongoClient
from pyspark.sql import SparkSession

from mlassets.metadata import markdown_table
from mlassets.resources import LakeResource
from mlassets.tables.error_tables import PRODUCER_ERROR_COUNTS, Window, write_day_table


def message_writer():
    """S3 on EMR (MLASSETS_PIPES_MESSAGES=s3, set by the launcher), Dagster's default writer otherwise."""
    if os.environ.get("MLASSETS_PIPES_MESSAGES") == "s3":
        return PipesS3MessageWriter(client=boto3.client("s3"), interval=5)
    return PipesDefaultMessageWriter()


def main() -> None:
    table = PRODUCER_ERROR_COUNTS
    with open_dagster_pipes(message_writer=message_writer()) as pipes:
        extras = pipes.extras
        span = pipes.partition_time_window
        window = Window(dt.datetime.fromisoformat(span["start"]), dt.datetime.fromisoformat(span["end"]))
        if extras.get("mongo_secret_id"):
            secrets = boto3.client("secretsmanager", region_name=extras["region"])
            mongo_uri = secrets.get_secret_value(SecretId=extras["mongo_secret_id"])["SecretString"]
        else:  # a local run (subprocess launcher) gets it from its environment
            mongo_uri = os.environ["MLASSETS_MONGO_URI"]
        spark = (SparkSession.builder.appName(f"mlassets-{table.name}")
                 .config("spark.mongodb.read.connection.uri", mongo_uri)
                 .config("spark.sql.session.timeZone", "UTC").getOrCreate())
        lake = LakeResource(root=extras["lake_root"], endpoint_url=extras.get("lake_endpoint_url"),
                            region=extras["region"])
        with MongoClient(mongo_uri) as client:
            result = write_day_table(table, window, spark, client[extras["database"]], lake)
        spark.stop()
        pipes.log.info(f"{len(result.rows)} rows for {result.days_label}")
        pipes.report_asset_materialization(metadata={
            "dagster/row_count": {"raw_value": len(result.rows), "type": "int"},
            "days": {"raw_value": result.days_label, "type": "text"},
            "records_counted_by_tallies": {"raw_value": result.by_tallies, "type": "int"},
            "records_read_one_by_one": {"raw_value": result.one_by_one, "type": "int"},
            "table": {"raw_value": markdown_table(result.rows, max_rows=50), "type": "md"},
            "columns": {"raw_value": ", ".join(table.columns), "type": "text"},
            "mongo_collection": {"raw_value": f"{extras['database']}.{table.collection}", "type": "text"},
            "computed_on": {"raw_value": "spark-submit (Pipes)", "type": "text"},
        })
        for check in result.checks():
            pipes.report_asset_check(check.name, passed=check.passed, metadata=check.metadata)


if __name__ == "__main__":
    main()
