"""The Python that Spark executors run on a cluster: a venv-pack archive shipped with `spark.archives`.

PySpark's documented way for clusters: a virtualenv packed with venv-pack, unpacked by every executor as
`./environment` and used as its interpreter (`spark.pyspark.python=./environment/bin/python`); the driver keeps its
own. The archive holds the third-party packages the executors import, pinned to the driver's versions, and is cached
under .cache/executor-env with a hash of pyproject.toml, the pins and the Python version in its name, so a change of
dependencies builds a new one. The project's own code goes as a small zip (`SparkContext.addPyFile`) made from the
driver's source, so an edit of mlassets needs no rebuild and the executors never run other code than the driver.
    python -m mlassets.stack.executor_env build [lean|tensorflow|xgboost]    # prints the archive's path and size
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import os
import shutil
import sys
import time
import zipfile
from pathlib import Path

from mlassets.paths import CACHE_DIR, PROJECT_ROOT
from mlassets.stack.process import StackError, run_checked

ENV_DIR = "environment"
EXECUTOR_PYTHON = f"./{ENV_DIR}/bin/python"
LEAN = "lean"
TENSORFLOW = "tensorflow"
XGBOOST = "xgboost"
# What executors import: the SUSY scorer (NumPy, threadpoolctl), Arrow batches of pandas UDFs and mapInPandas
# (pandas, pyarrow), image decoding (pillow); the fruit features also need Keras on TensorFlow, xgboost.spark's
# training tasks xgboost with SciPy and scikit-learn (its estimators' base classes).
_BASE = ("numpy", "pandas", "pyarrow", "pillow", "threadpoolctl")
FLAVORS: dict[str, tuple[str, ...]] = {
    LEAN: _BASE,
    TENSORFLOW: (*_BASE, "tensorflow-cpu", "keras"),
    XGBOOST: (*_BASE, "xgboost-cpu", "scipy", "scikit-learn"),
}
# Left out of the archive: the installer and the packages' own test suites (a quarter of the unpacked size).
EXCLUDED = ("lib/python*/site-packages/pip/*", "lib/python*/site-packages/setuptools/*",
            "lib/python*/site-packages/pkg_resources/*", "lib/python*/site-packages/*/tests/*", "bin/Activate.ps1")
PACKAGE_DIR = PROJECT_ROOT / "mlassets"
STALE_AFTER_S = 86_400.0


def executor_env_dir(cache_dir: Path = CACHE_DIR) -> Path:
    """The folder of the packed environments and project zips."""
    return cache_dir / "executor-env"


def requirements(flavor: str) -> list[str]:
    """The flavor's packages pinned to the versions installed next to the driver (Arrow and pandas must agree)."""
    if flavor not in FLAVORS:
        raise StackError(f"unknown executor environment {flavor!r}; choose one of {', '.join(FLAVORS)}")
    return [f"{name}=={importlib.metadata.version(name)}" for name in FLAVORS[flavor]]


def contains(flavor: str, other: str) -> bool:
    """True when the flavor's environment has every package of the other's."""
    return set(FLAVORS[other]) <= set(FLAVORS[flavor])


def archive_path(flavor: str, cache_dir: Path = CACHE_DIR, pyproject: Path = PROJECT_ROOT / "pyproject.toml") -> Path:
    """Where the flavor's archive for the current pyproject.toml, pins and Python lives (built or not)."""
    digest = hashlib.sha256()
    digest.update(pyproject.read_bytes())
    digest.update("\n".join([sys.version, *requirements(flavor), *EXCLUDED]).encode())
    return executor_env_dir(cache_dir) / f"mlassets-executor-{flavor}-{digest.hexdigest()[:12]}.tar.gz"


def build_archive(flavor: str = LEAN, cache_dir: Path = CACHE_DIR) -> Path:
    """The flavor's packed virtualenv, built once (pip from PyPI, then venv-pack) and reused while its hash holds."""
    target = archive_path(flavor, cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Dagster steps run in parallel processes, each creating a session: one builds while the others wait.
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.is_file():
            return target
        import venv_pack

        build = target.parent / f"build-{target.name.removesuffix('.tar.gz')}"
        shutil.rmtree(build, ignore_errors=True)
        try:
            run_checked([sys.executable, "-m", "venv", str(build)], "the executor virtualenv")
            run_checked([str(build / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                         *requirements(flavor)], f"pip install of the {flavor} executor packages")
            partial = target.with_name(target.name + ".partial")
            venv_pack.pack(prefix=str(build), output=str(partial), format="tar.gz", force=True,
                           filters=[("exclude", pattern) for pattern in EXCLUDED])
            partial.rename(target)
        finally:
            shutil.rmtree(build, ignore_errors=True)
        _remove_stale(target, f"mlassets-executor-{flavor}-*.tar.gz")
    return target


def _remove_stale(current: Path, pattern: str) -> None:
    # A session started before a change may still serve an older file to executors: keep those a day.
    for stale in current.parent.glob(pattern):
        if stale != current and time.time() - stale.stat().st_mtime > STALE_AFTER_S:
            stale.unlink(missing_ok=True)


def project_zip(cache_dir: Path = CACHE_DIR) -> Path:
    """The mlassets package's Python files as a zip for `addPyFile`, named by a hash of their content."""
    files = sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(PROJECT_ROOT)).encode() + b"\0" + path.read_bytes())
    target = executor_env_dir(cache_dir) / f"mlassets-{digest.hexdigest()[:12]}.zip"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f"{target.name}.{os.getpid()}.partial")  # parallel steps may write it at once
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                archive.write(path, str(path.relative_to(PROJECT_ROOT)))
        partial.rename(target)
        _remove_stale(target, "mlassets-*.zip")
    return target


def spark_settings(flavor: str = LEAN, cache_dir: Path = CACHE_DIR) -> dict[str, str]:
    """The Spark settings that make executors unpack the flavor's archive and run its Python."""
    return {"spark.archives": f"{build_archive(flavor, cache_dir)}#{ENV_DIR}",
            "spark.pyspark.python": EXECUTOR_PYTHON}


def main(argv: list[str] | None = None) -> int:
    """`python -m mlassets.stack.executor_env build [lean|tensorflow|xgboost]`."""
    args = argv if argv is not None else sys.argv[1:]
    if not args or args[0] != "build" or len(args) > 2:
        print(f"usage: python -m mlassets.stack.executor_env build [{'|'.join(FLAVORS)}]", file=sys.stderr)
        return 2
    try:
        archive = build_archive(args[1] if len(args) > 1 else LEAN)
    except StackError as exc:
        print(f"executor environment: {exc}", file=sys.stderr)
        return 1
    print(f"{archive}  {archive.stat().st_size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
