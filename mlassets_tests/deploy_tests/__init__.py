"""Tests of the deployment files: docker compose, Helm values, EMR through Pipes, the Spark cluster."""
