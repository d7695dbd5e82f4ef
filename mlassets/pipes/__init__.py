"""Spark scripts run outside the Dagster process through Dagster Pipes (spark-submit here, or EMR in prod)."""
