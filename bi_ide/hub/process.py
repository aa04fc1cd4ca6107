"""Start a hub as a child process and wait until it answers — for tests, benchmarks and notebooks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from bi_ide.errors import HubUnavailableError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HubProcess:
    """``bi-ide serve`` on loopback in its own process group; ``stop()`` ends the whole group.

    >>> with HubProcess(db="data/test.duckdb") as hub:
    ...     requests.get(hub.url + "/api/v1/health").json()
    """

    def __init__(self, db: str | os.PathLike, *, port: int | None = None, args: tuple[str, ...] = (),
                 log: str | os.PathLike | None = None, env: dict | None = None):
        self.db = Path(db)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = args
        self.log_path = Path(log) if log else self.db.with_name(f"hub-{self.port}.log")
        self.env = env
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 60.0) -> HubProcess:
        cmd = [sys.executable, "-m", "bi_ide.cli", "serve", "--db", str(self.db), "--port", str(self.port), *self.args]
        env = {k: v for k, v in (self.env or os.environ).items() if k not in ("BI_IDE_HUB",)}
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - the child writes to it until stop()
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise HubUnavailableError(f"the hub exited with {self.proc.returncode}: {self.log_tail()}")
            try:
                if requests.get(self.url + "/api/v1/health", timeout=1).ok:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise HubUnavailableError(f"the hub did not answer within {timeout_s:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
            except ProcessLookupError:
                pass
        if getattr(self, "_log", None):
            self._log.close()

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def __enter__(self) -> HubProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
