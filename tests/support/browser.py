"""Headless Chromium (the Debian package) driven over the Chrome DevTools Protocol, for pages people click.

Usage::

    with Browser() as browser:                       # chromium started, one blank page attached
        browser.navigate(base_url + "/docs")
        browser.wait_for("document.querySelectorAll('.opblock').length > 0")
        browser.click("#some-button")
        browser.screenshot(path)

The protocol is JSON over one WebSocket (the ``websockets`` package): a command is ``{id, method,
params}`` and its answer carries the same ``id``; events in between are dropped. No driver binary, no
browser download: the chromium on the machine (scripts/apt-deps installs it), started with a fresh
profile and every background service off, so a run touches nothing but the page it is given.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
from websockets.sync.client import ClientConnection, connect

FLAGS = (
    "--headless",
    "--no-sandbox",  # tests run as root, where Chromium's sandbox cannot start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,2000",
    "--remote-debugging-port=0",  # a free port, written to DevToolsActivePort in the profile
)


def chromium() -> str | None:
    """The Chromium binary on this machine, if any."""
    return next((p for name in ("chromium", "chromium-browser") if (p := shutil.which(name))), None)


class BrowserError(RuntimeError):
    """Chromium did not start, or a command or a wait failed."""


class Browser:
    """One headless Chromium with one page, closed (and its profile removed) when the block ends."""

    def __init__(self, *, timeout: float = 20.0) -> None:
        binary = chromium()
        if binary is None:
            raise BrowserError("no chromium on this machine (scripts/apt-deps installs it)")
        self.binary = binary
        self.timeout = timeout
        self.profile = Path(tempfile.mkdtemp(prefix="datasvc-chromium-"))
        self.log = self.profile.with_suffix(".log")  # Chromium's own output, beside (not in) the profile
        self.process: subprocess.Popen[bytes] | None = None
        self._ws: ClientConnection | None = None
        self._connection = contextlib.ExitStack()
        self._ids = itertools.count(1)

    def __enter__(self) -> Browser:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start(self) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [self.binary, *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + self.timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None:
                raise BrowserError(f"chromium exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium did not open its DevTools port within {self.timeout} s")
            time.sleep(0.05)
        port = int(port_file.read_text().split()[0])
        targets = httpx2.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        page = next(t for t in targets if t["type"] == "page")
        self._ws = self._connection.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=64 * 2**20, open_timeout=self.timeout)
        )

    def close(self) -> None:
        self._connection.close()
        self._ws = None
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.profile, ignore_errors=True)
        self.log.unlink(missing_ok=True)

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        """One protocol command; its result (events that arrive meanwhile are not needed, and dropped)."""
        assert self._ws is not None
        command_id = next(self._ids)
        self._ws.send(json.dumps({"id": command_id, "method": method, "params": params}))
        deadline = time.monotonic() + self.timeout
        while True:
            message = json.loads(self._ws.recv(timeout=max(deadline - time.monotonic(), 0.01)))
            if message.get("id") != command_id:
                continue
            if "error" in message:
                raise BrowserError(f"{method}: {message['error']}")
            result: dict[str, Any] = message["result"]
            return result

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails'].get('exception', result)}")
        return result["result"].get("value")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", url=url)

    def wait_for(self, expression: str, *, timeout: float | None = None) -> Any:
        """Poll ``expression`` until it is truthy; its value. Fails after ``timeout`` with the expression."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise BrowserError(f"still false after {timeout or self.timeout} s: {expression}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """Click the element ``selector`` finds once it is there (a DOM click, as React handles it)."""
        self.wait_for(f"document.querySelector({json.dumps(selector)}) !== null")
        self.evaluate(f"document.querySelector({json.dumps(selector)}).click()")

    def type_into(self, selector: str, text: str) -> None:
        """Type ``text`` into the input ``selector`` finds, as keyboard input, then leave it.

        Leaving it (blur) is what a person does next, and it hands the value to the page at once: Swagger
        UI's inputs otherwise report a change only after a 300 ms debounce.
        """
        found = f"document.querySelector({json.dumps(selector)})"
        self.wait_for(f"{found} !== null")
        self.evaluate(f"{found}.focus()")
        self.send("Input.insertText", text=text)
        self.evaluate(f"{found}.blur()")

    def screenshot(self, path: Path) -> Path:
        """The page as a PNG at ``path``."""
        data = self.send("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path
