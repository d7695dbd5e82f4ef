"""The executor environment's cache key and when the Spark resource ships it (no Spark started here)."""

from pathlib import Path

import pytest

from mlassets.paths import PROJECT_ROOT
from mlassets.resources import SparkResource
from mlassets.stack import executor_env
from mlassets.stack.executor_env import LEAN, TENSORFLOW, XGBOOST


def test_a_changed_pyproject_names_a_new_archive_and_the_same_one_the_same(tmp_path: Path) -> None:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_bytes((PROJECT_ROOT / "pyproject.toml").read_bytes())
    same = executor_env.archive_path(LEAN, tmp_path, pyproject)
    assert same == executor_env.archive_path(LEAN, tmp_path, PROJECT_ROOT / "pyproject.toml")
    assert same.parent == tmp_path / "executor-env" and same.name.startswith("mlassets-executor-lean-")
    pyproject.write_text(pyproject.read_text().replace('"pyyaml>=6"', '"pyyaml>=6.0.2"'))
    assert executor_env.archive_path(LEAN, tmp_path, pyproject) != same
    assert executor_env.archive_path(TENSORFLOW, tmp_path) != executor_env.archive_path(LEAN, tmp_path)


def test_flavors_are_pinned_to_the_drivers_versions_and_only_the_big_ones_hold_tensorflow_or_xgboost() -> None:
    import numpy
    import pandas
    import pyarrow

    lean = executor_env.requirements(LEAN)
    assert {f"numpy=={numpy.__version__}", f"pandas=={pandas.__version__}", f"pyarrow=={pyarrow.__version__}"} <= set(lean)
    assert not [r for r in lean if r.startswith(("tensorflow", "keras", "xgboost", "scipy"))]
    assert any(r.startswith("tensorflow-cpu==") for r in executor_env.requirements(TENSORFLOW))
    assert any(r.startswith("xgboost-cpu==") for r in executor_env.requirements(XGBOOST))
    assert executor_env.contains(TENSORFLOW, LEAN) and not executor_env.contains(LEAN, TENSORFLOW)
    with pytest.raises(Exception, match="unknown executor environment 'gpu'"):
        executor_env.requirements("gpu")


@pytest.mark.parametrize("config, ships", [
    ({"spark.master": "local[*]"}, False),
    ({"spark.master": "spark://127.0.0.1:17077"}, True),
    ({"spark.master": "spark://spark-master:7077", "spark.pyspark.python": "python3"}, False),  # docker: the image
    ({"spark.master": "k8s://https://k8s:443", "spark.archives": "s3a://b/env.tar.gz#environment"}, False),
])
def test_the_environment_is_shipped_only_where_the_settings_name_no_executor_python(config: dict, ships: bool) -> None:
    assert SparkResource(spark_config=config).ships_environment() is ships


def test_a_session_started_lean_refuses_a_tensorflow_asset_on_a_cluster() -> None:
    resource = SparkResource(spark_config={"spark.master": "spark://127.0.0.1:17077"})
    resource._spark_session = object()  # a session already started with the default, lean, environment
    with pytest.raises(RuntimeError, match="ships the 'lean' executor environment, not 'tensorflow'"):
        resource.session_for(TENSORFLOW)
    assert resource.session_for(LEAN) is resource._spark_session


def test_a_cluster_session_is_refused_while_a_local_context_runs(spark) -> None:
    """getOrCreate would return the running local context with the cluster's settings dropped."""
    with pytest.raises(RuntimeError, match=r"already runs a Spark context on 'local\[.*'spark://127.0.0.1:1'"):
        SparkResource(spark_config={"spark.master": "spark://127.0.0.1:1"}).spark_session
    assert spark.sparkContext._jsc is not None


def test_the_project_zip_holds_the_package_as_it_is_now(tmp_path: Path) -> None:
    import zipfile

    names = zipfile.ZipFile(executor_env.project_zip(tmp_path)).namelist()
    assert "mlassets/models/susy_mlp.py" in names and "mlassets/stack/executor_env.py" in names
    assert not [n for n in names if "__pycache__" in n or not n.startswith("mlassets/")]
