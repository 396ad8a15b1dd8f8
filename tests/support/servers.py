"""The one way a test starts the service on a socket: a `Server`, in a thread or in its own process.

Usage::

    with ThreadServer(settings) as server:                  # started: /health answers
        httpx2.get(server.base_url + "/health")

    with ProcessServer(settings, tmp_path / "serve.log") as server:
        server.signal(signal.SIGTERM)                       # what a thread cannot show: signals,
        code = server.wait(6)                               # ``kill -9``, the process's exit

Both run the HTTP stack of ``datasvc serve`` (httptools with the bounds and timeouts of ``settings``,
uvloop) on 127.0.0.1, are built from `Settings`, `start` when the block opens (returning once ``/health``
answers, failing past a deadline) and stop when it ends. `ThreadServer` serves ``create_app(settings)``
inside the test's process (so the test can read the app's state); `ProcessServer` runs the command
operators run, ``python -m datasvc serve``, configured only through the environment built from
`Settings` and `FIELDS`, so the test exercises the real start-up path. ``env`` and ``command`` replace
them for the tests of the start-up path itself (the embedded database, the container image).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from signal import Signals
from typing import IO, Any, Self

import httpx2
import uvicorn

from datasvc.app import create_app
from datasvc.protocol import for_settings
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


class Server:
    """What every test server offers: a port on 127.0.0.1, `start` (until ready), `stop`, ``with``."""

    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start and wait until the server answers; the seconds that took."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadServer(Server):
    """``create_app(settings)`` under uvicorn in a daemon thread, on a socket bound before it starts.

    Port 0, so no race for a free port. `stop` sets uvicorn's ``should_exit`` and waits for the
    lifespan to close the pool. ``config``: more `uvicorn.Config` options.
    """

    def __init__(self, settings: Settings, **config: Any) -> None:
        self.app = create_app(settings)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        options: dict[str, Any] = {
            "loop": "uvloop",
            "http": for_settings(settings),
            "log_config": None,
            "access_log": False,
            "server_header": False,
            "lifespan": "on",
            **config,
        }
        self.server = uvicorn.Server(uvicorn.Config(self.app, **options))
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self.error: BaseException | None = None

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # surfaced by start() rather than lost in the thread
            self.error = exc

    def start(self, timeout: float = 60.0) -> float:
        started = time.monotonic()
        self.thread.start()
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start: {self.error!r}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"uvicorn did not start within {timeout} s")
            time.sleep(0.01)
        return time.monotonic() - started

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
        if self.thread.is_alive():
            raise TimeoutError(f"uvicorn did not stop within {timeout} s")


class ProcessServer(Server):
    """One ``datasvc serve`` process on 127.0.0.1; `start` again after a kill reuses the port.

    ``env``: the whole environment instead of the one built from ``settings`` (``DATASVC_PORT`` is
    still set: the port is the server's); ``command``: another command line than ``python -m datasvc serve``;
    ``ready``: the path that must answer 200 before `start` returns; ``timeout``: how long it may take.
    """

    def __init__(
        self,
        settings: Settings | None,
        log_path: Path,
        *,
        port: int | None = None,
        access_log: bool = False,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
        ready: str = "/health",
        timeout: float = 60.0,
    ) -> None:
        self.port = port or free_port()
        self.settings = (
            settings.with_overrides(host="127.0.0.1", port=self.port, access_log=access_log)
            if settings is not None
            else None
        )
        if env is None:
            if self.settings is None:
                raise ValueError("ProcessServer needs settings or env")
            env = environment(self.settings)
        self.env = env | {"DATASVC_PORT": str(self.port)}
        self.command = command or [sys.executable, "-m", "datasvc", "serve"]
        self.ready = ready
        self.timeout = timeout
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> float:
        started = time.monotonic()
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command, cwd=PROJECT_ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT
        )
        while True:
            if self.process.poll() is not None:
                self._log.close()  # else the next test fails on this test's unclosed file (ResourceWarning)
                raise RuntimeError(
                    f"datasvc serve exited with {self.process.returncode}; see {self.log_path}:\n"
                    + self.output()[-2000:]
                )
            try:
                if httpx2.get(self.base_url + self.ready, timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx2.HTTPError:
                pass
            if time.monotonic() - started > self.timeout:
                self.kill()
                raise TimeoutError(
                    f"datasvc serve did not answer within {self.timeout} s; see {self.log_path}:\n"
                    + self.output()[-2000:]
                )
            time.sleep(0.05)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: Signals) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float) -> int:
        """Wait for the process to exit; its exit code."""
        assert self.process is not None
        code = self.process.wait(timeout)
        if self._log is not None:
            self._log.close()
        return code

    def stop_with(self, sig: Signals, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the process to exit; its exit code."""
        self.signal(sig)
        return self.wait(timeout)

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """``kill -9``: no shutdown code runs at all."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.wait(10)

    def stop(self) -> None:
        self.kill()
