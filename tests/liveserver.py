"""`datasvc serve` in a subprocess, for what a thread cannot show: SIGTERM, ``kill -9``, process exit.

Usage::

    with LiveServer(settings, log_path) as server:   # started, /health answers
        httpx2.get(server.base_url + "/health")
        server.signal(signal.SIGTERM)
        code = server.wait(6)

The command is the one operators run (``python -m datasvc serve``), configured only through the
environment built from `Settings` and `FIELDS`, so the test exercises the real start-up path.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

import httpx2

from datasvc.settings import FIELDS, PROJECT_ROOT, Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def environment(settings: Settings) -> dict[str, str]:
    """The process environment that makes ``Settings.from_env()`` equal ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATASVC_") and k != "DATABASE_URL"}
    for spec in FIELDS:
        value: Any = getattr(settings, spec.attr)
        if value is None:
            continue
        env[spec.env] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return env


class LiveServer:
    """One ``datasvc serve`` process on 127.0.0.1; `start` again after a kill reuses the port."""

    def __init__(
        self, settings: Settings, log_path: Path, *, port: int | None = None, access_log: bool = False
    ) -> None:
        self.port = port or free_port()
        self.settings = settings.with_overrides(host="127.0.0.1", port=self.port, access_log=access_log)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> float:
        """Start and wait until ``/health`` answers; returns the seconds that took."""
        started = time.monotonic()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "datasvc", "serve"],
            cwd=PROJECT_ROOT,
            env=environment(self.settings),
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        while True:
            if self.process.poll() is not None:
                self._log.close()  # else the next test fails on this test's unclosed file (ResourceWarning)
                raise RuntimeError(
                    f"datasvc serve exited with {self.process.returncode}; see {self.log_path}:\n"
                    + self.log_path.read_text(errors="replace")[-2000:]
                )
            try:
                if httpx2.get(self.base_url + "/health", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx2.HTTPError:
                pass
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"datasvc serve did not answer within {timeout} s; see {self.log_path}")
            time.sleep(0.05)

    def signal(self, sig: signal.Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code."""
        assert self.process is not None
        code = self.process.wait(timeout)
        if self._log is not None:
            self._log.close()
        return code

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs at all."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.wait(10)

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()
