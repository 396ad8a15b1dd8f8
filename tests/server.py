"""A real uvicorn server in a thread, for tests that need sockets, concurrency or a live OpenAPI target.

Usage::

    with serve(settings) as base_url:            # "http://127.0.0.1:<port>"
        httpx2.get(base_url + "/health")

The socket is bound before the server starts (port 0, so no race for a free port), the server runs the
same HTTP stack as `datasvc serve` (httptools, uvloop), and leaving the block stops it and waits for its
lifespan to close the pool. `server.should_exit` can be set earlier to test shutdown.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from datasvc.app import create_app
from datasvc.protocol import for_settings
from datasvc.settings import Settings


class ThreadServer:
    """uvicorn.Server on a pre-bound 127.0.0.1 socket in a daemon thread."""

    def __init__(self, app: ASGIApp, **config: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        options: dict[str, Any] = {
            "loop": "uvloop",
            "http": "httptools",
            "log_config": None,
            "access_log": False,
            "server_header": False,
            "lifespan": "on",
            **config,
        }
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self.thread = threading.Thread(target=self._run, name=f"uvicorn-{self.port}", daemon=True)
        self.error: BaseException | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self.sock])
        except BaseException as exc:  # surfaced by start() rather than lost in the thread
            self.error = exc

    def start(self, timeout: float = 10.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if self.error is not None or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start: {self.error!r}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"uvicorn did not start within {timeout} s")
            time.sleep(0.01)

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.sock.close()
        if self.thread.is_alive():
            raise TimeoutError(f"uvicorn did not stop within {timeout} s")


@contextmanager
def serve_app(app: ASGIApp, **config: Any) -> Iterator[ThreadServer]:
    """Run ``app`` on a free 127.0.0.1 port until the block ends; yields the `ThreadServer`."""
    server = ThreadServer(app, **config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@contextmanager
def serve(settings: Settings, **config: Any) -> Iterator[str]:
    """`create_app(settings)` served on a free 127.0.0.1 port; yields its base URL.

    The HTTP protocol is `datasvc serve`'s: httptools with the bounds and timeouts of ``settings``.
    """
    config.setdefault("http", for_settings(settings))
    with serve_app(create_app(settings), **config) as server:
        yield server.base_url
