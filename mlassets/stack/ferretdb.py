"""A MongoDB wire-protocol server: FerretDB v1 with its SQLite backend, built from the Go module proxy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from mlassets.stack.process import ManagedProcess, StackError, port_open, refuse_taken_port, require_tool, run_checked
from mlassets.stack.settings import FERRETDB_VERSION, StackSettings

MODULE = "github.com/FerretDB/FerretDB"
# The release's own toolchain, fetched through the module proxy when the local Go cannot build it.
FALLBACK_TOOLCHAIN = "go1.24.3"


class FerretDBServer:
    """FerretDB listening on loopback, one SQLite file per database under the run directory."""

    name = "ferretdb"
    build_label = "build"

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.proc = ManagedProcess(self.name, settings.run_dir)
        self.build_dir = settings.cache_dir / f"ferretdb-{FERRETDB_VERSION}"
        self.binary = self.build_dir / "ferretdb"
        self.data_dir = settings.run_dir / "ferretdb-data"

    @property
    def built(self) -> bool:
        """Whether the FerretDB binary is built."""
        return self.binary.exists()

    def build(self) -> None:
        """Download the module, add the version.txt its zip lacks, and build a static binary, once."""
        if self.built:
            return
        go = require_tool("go", "Go 1.24 or newer from https://go.dev/dl/ or `apt-get install golang`")
        env = {
            "GOMODCACHE": str(self.settings.cache_dir / "gomodcache"),
            "GOFLAGS": "-modcacherw",
            "CGO_ENABLED": "0",
        }
        log = self.settings.run_dir / "build.log"
        result = subprocess.run(
            [go, "mod", "download", "-json", f"{MODULE}@{FERRETDB_VERSION}"],
            env={**os.environ, **env}, capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise StackError(f"Downloading {MODULE}@{FERRETDB_VERSION} failed:\n{result.stdout}{result.stderr}")
        module_dir = Path(json.loads(result.stdout)["Dir"])
        src = self.build_dir / "src"
        shutil.rmtree(src, ignore_errors=True)
        shutil.copytree(module_dir, src)
        for path in src.rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        # The binary panics at start-up without this generated file, which the module zip omits.
        (src / "build" / "version" / "version.txt").write_text(FERRETDB_VERSION)
        argv = [go, "build", "-o", str(self.binary), "./cmd/ferretdb"]
        try:
            run_checked(argv, "Building FerretDB", cwd=src, env={**env, "GOTOOLCHAIN": "local"}, log_file=log)
        except StackError:
            run_checked(argv, f"Building FerretDB with {FALLBACK_TOOLCHAIN}", cwd=src,
                        env={**env, "GOTOOLCHAIN": FALLBACK_TOOLCHAIN}, log_file=log)

    def start(self) -> None:
        """Start FerretDB and wait until it answers a ping."""
        if self.proc.pid() is not None:
            return
        s = self.settings
        refuse_taken_port("ferretdb", s.host, s.mongo_port)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.proc.start(
            [str(self.binary), "--handler=sqlite", f"--sqlite-url=file:{self.data_dir}/",
             f"--listen-addr={s.host}:{s.mongo_port}", f"--state-dir={self.data_dir}",
             "--debug-addr=-", "--telemetry=disable", "--log-level=warn"],
            cwd=self.data_dir,
        )
        self.proc.wait_ready(self.ready, s.start_timeout_s)

    def ready(self) -> bool:
        """True when the server answers the ping command."""
        if not port_open(self.settings.host, self.settings.mongo_port):
            return False
        from pymongo import MongoClient

        with MongoClient(self.settings.mongo_uri, serverSelectionTimeoutMS=2000) as client:
            client.admin.command("ping")
        return True
