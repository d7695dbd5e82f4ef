"""Imports in Spark Python workers, kept clear of the package jars Spark puts on their sys.path."""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType


@contextmanager
def python_path_without_jars() -> Iterator[None]:
    """sys.path without `.jar` entries while TensorFlow is imported, restored afterwards.

    Spark ships every `spark.jars.packages` jar to the Python workers as a pyFile and puts it on sys.path; TensorFlow's
    import scans the path's distributions (importlib.metadata), which reads the whole directory of the 686 MB AWS SDK
    bundle: 7.4 instead of 3.5 CPU seconds per worker.
    """
    saved = list(sys.path)
    sys.path[:] = [p for p in saved if not p.lower().endswith(".jar")]
    try:
        yield
    finally:
        sys.path[:] = saved + [p for p in sys.path if p not in saved]


def import_keras(threads: int = 0) -> ModuleType:
    """Keras (and TensorFlow under it), imported with the jars off sys.path; later imports reuse the module.

    `threads` > 0 caps TensorFlow's intra-op threads in this process (one inter-op thread): Spark runs a task per
    core, so workers that each took every core would compete for them. The cap holds only when set before
    TensorFlow's runtime starts; a later call keeps the settings the process already runs with.
    """
    with python_path_without_jars():
        import keras
    if threads > 0:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:
            pass  # the runtime is already initialised in this process
    return keras
