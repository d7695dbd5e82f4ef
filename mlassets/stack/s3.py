"""An S3 endpoint on loopback: the moto server, in memory."""

from __future__ import annotations

import sys
import urllib.request

from mlassets.stack.process import ManagedProcess, StackError, refuse_taken_port
from mlassets.stack.settings import StackSettings


class MotoS3Server:
    """moto[server] serving the S3 API; its buckets live in memory until it stops."""

    name = "s3"
    build_label = "package"
    built = True  # moto comes with the package's test extras

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.proc = ManagedProcess(self.name, settings.run_dir)

    def build(self) -> None:
        """Nothing to build: moto comes with the package's test extras."""
        try:
            import moto.server  # noqa: F401
        except ImportError as exc:
            raise StackError("moto[server] is not installed: `pip install 'moto[server]'`") from exc

    def start(self) -> None:
        """Start the moto server and wait until it answers HTTP."""
        if self.proc.pid() is not None:
            return
        s = self.settings
        refuse_taken_port("s3", s.host, s.s3_port)
        s.run_dir.mkdir(parents=True, exist_ok=True)
        self.proc.start([sys.executable, "-m", "moto.server", "-H", s.host, "-p", str(s.s3_port)],
                        cwd=s.run_dir)
        self.proc.wait_ready(self.ready, s.start_timeout_s)

    def ready(self) -> bool:
        """True when the server lists buckets."""
        with urllib.request.urlopen(f"{self.settings.s3_endpoint}/", timeout=2) as response:
            return response.status == 200
