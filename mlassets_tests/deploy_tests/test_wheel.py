"""The built wheel works on its own: the environments' YAML and the Pipes scripts are inside, and an unpacked copy,
imported from another directory, loads an environment and finds its scripts."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from mlassets.environments import available_environments
from mlassets.pipes.emr import SCRIPTS_DIR

REPO = Path(__file__).resolve().parents[2]
INSTALLED = """
import json
import mlassets
from mlassets.environments import RESOURCES_DIR, available_environments, load_environment
from mlassets.pipes.emr import SCRIPTS_DIR
local = load_environment("local")
print(json.dumps({
    "package": mlassets.__file__, "resources_dir": str(RESOURCES_DIR), "scripts_dir": str(SCRIPTS_DIR),
    "environments": available_environments(), "scripts": sorted(p.name for p in SCRIPTS_DIR.iterdir()),
    "mongo_uri": local["mongo"].uri, "spark_config": local["spark"].spark_config,
}))
"""


def test_the_wheel_ships_the_environments_and_the_scripts(tmp_path: Path) -> None:
    # built from a copy of the sources, so that the checkout gets no build/ folder
    source = tmp_path / "source"
    shutil.copytree(REPO / "mlassets", source / "mlassets", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                            "-w", str(tmp_path / "dist"), str(source)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("mlassets-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        archive.extractall(tmp_path / "site")
    environments = available_environments()
    assert environments == ["docker", "local", "prod"]
    assert {f"mlassets/resources/{env}.yaml" for env in environments} <= names
    scripts = sorted(p.name for p in SCRIPTS_DIR.iterdir() if p.suffix in (".py", ".sh"))
    assert scripts == ["bootstrap.sh", "producer_error_counts.py"]
    assert {f"mlassets/pipes/scripts/{name}" for name in scripts} <= names

    # the unpacked wheel first on the path (before the checkout's editable install), run from elsewhere
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLASSETS_")}
    env["PYTHONPATH"] = str(tmp_path / "site")
    run = subprocess.run([sys.executable, "-c", INSTALLED], cwd=elsewhere, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    installed = json.loads(run.stdout.strip().splitlines()[-1])
    site = str(tmp_path / "site")
    assert installed["package"].startswith(site)
    assert installed["resources_dir"].startswith(site) and installed["scripts_dir"].startswith(site)
    assert installed["environments"] == environments
    assert set(scripts) <= set(installed["scripts"])
    assert installed["mongo_uri"] == "mongodb://127.0.0.1:27017/"
    assert installed["spark_config"]["spark.mongodb.write.connection.uri"] == installed["mongo_uri"]
