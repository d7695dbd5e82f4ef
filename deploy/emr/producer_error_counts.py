"""producer_error_counts computed on a Spark cluster (EMR) and reported back to Dagster through Pipes.

Submitted by mlassets/pipes/emr.py as `spark-submit <this file>`; the Pipes context (partition window, extras)
comes from the environment EMR passes to the driver, messages go to S3 (or to the file of a local run).
Extras: database, lake_root, lake_endpoint_url, region and, on EMR, mongo_secret_id (a Secrets Manager secret
holding the MongoDB URI, so that no credential is written into the cluster's configuration; local runs read
MLASSETS_MONGO_URI from their environment).
"""

import datetime as dt
import os

import boto3
from dagster import TimeWindow
from dagster_pipes import PipesDefaultMessageWriter, PipesS3MessageWriter, open_dagster_pipes
from pymongo import MongoClient
from pyspark.sql import SparkSession

from mlassets.assets.iot.error_tables import (PRODUCER_COLUMNS, count_producer_errors, days_of, inference_days,
                                              replace_days, window_filter)
from mlassets.assets.iot.inference import INFERENCE_COLLECTION
from mlassets.metadata import markdown_table
from mlassets.resources import LakeResource


def message_writer():
    """S3 on EMR (MLASSETS_PIPES_MESSAGES=s3, set by the launcher), Dagster's default writer otherwise."""
    if os.environ.get("MLASSETS_PIPES_MESSAGES") == "s3":
        return PipesS3MessageWriter(client=boto3.client("s3"), interval=5)
    return PipesDefaultMessageWriter()


def main() -> None:
    with open_dagster_pipes(message_writer=message_writer()) as pipes:
        extras = pipes.extras
        span = pipes.partition_time_window
        window = TimeWindow(dt.datetime.fromisoformat(span["start"]), dt.datetime.fromisoformat(span["end"]))
        if extras.get("mongo_secret_id"):
            secrets = boto3.client("secretsmanager", region_name=extras["region"])
            mongo_uri = secrets.get_secret_value(SecretId=extras["mongo_secret_id"])["SecretString"]
        else:  # a local run (subprocess launcher) gets it from its environment
            mongo_uri = os.environ["MLASSETS_MONGO_URI"]
        spark = (SparkSession.builder.appName("mlassets-producer_error_counts")
                 .config("spark.mongodb.read.connection.uri", mongo_uri)
                 .config("spark.sql.session.timeZone", "UTC").getOrCreate())
        days = days_of(window)
        table = count_producer_errors(inference_days(spark, window, extras["database"]))
        spark.stop()
        lake = LakeResource(root=extras["lake_root"], endpoint_url=extras.get("lake_endpoint_url"),
                            region=extras["region"])
        with MongoClient(mongo_uri) as client:
            database = client[extras["database"]]
            replace_days(table, days, "producer_id", database["wrong_inference_stats"], "producer_error_counts", lake)
            expected = database[INFERENCE_COLLECTION].count_documents(window_filter(window))
        counted = int(table["total_inferences"].sum() + table["pending_count"].sum())
        rates = table["error_rate"].dropna()
        pipes.log.info(f"{len(table)} rows for {days[0]} .. {days[-1]}")
        pipes.report_asset_materialization(metadata={
            "dagster/row_count": {"raw_value": len(table), "type": "int"},
            "days": {"raw_value": f"{days[0]} ... {days[-1]}" if len(days) > 1 else days[0], "type": "text"},
            "table": {"raw_value": markdown_table(table, max_rows=50), "type": "md"},
            "columns": {"raw_value": ", ".join(PRODUCER_COLUMNS), "type": "text"},
            "computed_on": {"raw_value": "spark-submit (Pipes)", "type": "text"},
        })
        pipes.report_asset_check("totals_match_records", passed=counted == expected,
                                 metadata={"counted": counted, "records_in_mongo": expected})
        pipes.report_asset_check("error_rate_in_bounds", passed=bool(((rates >= 0) & (rates <= 1)).all()),
                                 metadata={"min": float(rates.min()) if len(rates) else 0.0,
                                           "max": float(rates.max()) if len(rates) else 0.0})


if __name__ == "__main__":
    main()
