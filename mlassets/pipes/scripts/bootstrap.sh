#!/bin/bash
# EMR bootstrap action (every node): Python 3.11 with the mlassets wheel and dagster-pipes, so that the Spark
# scripts beside this file (mlassets/pipes/scripts) import the same counting code as the in-process assets. The
# cluster's own Spark is used: the pip pyspark that the wheel pulls in is removed again. Argument: the s3:// URI of
# the mlassets wheel.
set -euo pipefail
wheel_uri=${1:?usage: bootstrap.sh s3://bucket/prefix/mlassets-<version>-py3-none-any.whl}
sudo dnf install -y -q python3.11 python3.11-pip
workdir=$(mktemp -d)
aws s3 cp "$wheel_uri" "$workdir/"
sudo python3.11 -m pip install -q "$workdir"/*.whl "dagster-pipes==1.13.27"
sudo python3.11 -m pip uninstall -y -q pyspark
rm -rf "$workdir"
