"""Background server processes tracked by pid files, with log files and readiness waits."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path


class StackError(RuntimeError):
    """A local server could not be built, started or stopped; the message says which and why."""


@dataclass(frozen=True)
class ManagedProcess:
    """One server process: its name, pid file and log file."""

    name: str
    run_dir: Path

    @property
    def pid_file(self) -> Path:
        return self.run_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.run_dir / f"{self.name}.log"

    def pid(self) -> int | None:
        """The pid of the running process, or None when it is not running."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid
        if _is_zombie(pid):
            return None
        return pid

    def start(self, argv: Sequence[str], cwd: Path, env: dict[str, str] | None = None) -> int:
        """Start argv in its own session, output appended to the log file; returns the pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {' '.join(argv)}\n".encode())
            log.flush()
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Stop the process group (TERM, then KILL after timeout_s); True when something was stopped."""
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.2)
        if _group_alive(pid):
            _signal_group(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _group_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the log file, for error messages."""
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log written)"

    def wait_ready(self, probe: Callable[[], bool], timeout_s: float) -> None:
        """Poll probe until it returns True; raise StackError naming the server and its log otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise StackError(
                    f"{self.name} exited during start-up; log: {self.log_file}\n{self.log_tail()}"
                )
            try:
                if probe():
                    return
            except Exception:  # noqa: BLE001 - any failure of the probe means "not ready yet"
                pass
            time.sleep(0.3)
        raise StackError(
            f"{self.name} was not ready after {timeout_s:.0f}s; log: {self.log_file}\n{self.log_tail()}"
        )


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """True when a TCP connection to host:port succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def refuse_taken_port(server: str, host: str, port: int) -> None:
    """Raise StackError naming the server and the port when another process already listens there."""
    if port_open(host, port):
        raise StackError(f"{server}: port {port} is already in use by another process")


def require_tool(name: str, how_to_install: str) -> str:
    """The absolute path of a command-line tool, or a StackError saying how to install it."""
    path = shutil.which(name)
    if path is None:
        raise StackError(f"`{name}` is required but not on PATH. Install it: {how_to_install}")
    return path


def run_checked(argv: Sequence[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None,
                log_file: Path | None = None) -> None:
    """Run a build step to completion; raise StackError with its output tail when it fails."""
    result = subprocess.run(
        list(argv), cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True
    )
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(log_file, "a") as log:
            log.write(f"$ {' '.join(argv)}\n{result.stdout}\n{result.stderr}\n")
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-20:])
        raise StackError(f"{what} failed (exit {result.returncode}): {' '.join(argv)}\n{tail}")


def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: state, parent pid, process group...; None: gone."""
    try:
        # the command name in parentheses may itself hold spaces and ')': split after the last one
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
    except OSError:
        return None


def _is_zombie(pid: int) -> bool:
    fields = proc_stat(pid)
    return fields is not None and fields[0] == "Z"


def _signal_group(pid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # Only zombies left (no one reaps a detached child of a finished parent) means stopped.
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        fields = proc_stat(proc.name)
        if fields is not None and int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False
