"""Keras imports in Spark Python workers: jars kept off sys.path, TensorFlow's threads capped when asked."""

import json
import subprocess
import sys

import pytest

from mlassets.models.worker_imports import python_path_without_jars

PROBE = """
import json, sys
sys.path.append("/nowhere/aws-sdk-bundle.jar")
from mlassets.models.worker_imports import import_keras
import_keras({threads})
import tensorflow as tf
print(json.dumps([tf.config.threading.get_intra_op_parallelism_threads(),
                  tf.config.threading.get_inter_op_parallelism_threads(),
                  "/nowhere/aws-sdk-bundle.jar" in sys.path]))
"""


@pytest.mark.parametrize("threads, expected", [(0, [0, 0]), (1, [1, 1]), (3, [3, 1])])
def test_import_keras_caps_tensorflow_threads_only_when_asked(threads: int, expected: list[int]) -> None:
    # A fresh interpreter: the cap holds only before TensorFlow's runtime starts, as in a new Spark worker.
    result = subprocess.run([sys.executable, "-c", PROBE.format(threads=threads)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    intra, inter, jar_kept = json.loads(result.stdout.strip().splitlines()[-1])
    assert [intra, inter] == expected and jar_kept


def test_jars_are_off_the_path_only_inside_the_block() -> None:
    sys.path.append("/nowhere/bundle.JAR")
    try:
        with python_path_without_jars():
            assert not [p for p in sys.path if p.lower().endswith(".jar")]
        assert sys.path[-1] == "/nowhere/bundle.JAR"
    finally:
        sys.path.remove("/nowhere/bundle.JAR")
