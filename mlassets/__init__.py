"""mlassets: a Dagster asset graph for Kafka + MongoDB + Spark + TensorFlow pipelines."""
