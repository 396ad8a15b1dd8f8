"""A real HAProxy (Debian's ``haproxy``, installed by ``scripts/apt-deps``) in front of test instances.

Usage::

    with HAProxy(tmp_path, {"a": port_a, "b": port_b}) as lb:   # started; both servers checked
        lb.wait_for("a", "UP")
        httpx2.get(lb.base_url + "/health")

The configuration is the one docs/scaling.md recommends, with check intervals shortened so a test takes
seconds: each server is health-checked on ``GET /health/ready`` and taken out of rotation after two
failed checks. Every answer names the server that gave it in ``X-Served-By``. The admin socket answers
``show stat``, which is how a test sees what the balancer sees.
"""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from tests.support.servers import free_port

CHECK_INTERVAL_MS = 100
FALL = 2  # failed checks before a server is taken out
RISE = 2  # passed checks before it is put back

_CONFIG = """\
global
    stats socket {socket} level admin
    maxconn 2000

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    # A check answered late is not a failed check: without this the check's read timeout is `inter`
    # (100 ms here), and on a loaded 2-core machine the one instance serving alone during the other's
    # restart missed two checks in a row and was taken out too (HAProxy answered 503: no server).
    timeout check 2s
    retries 0  # no retry hides a request the service failed: every failure reaches the caller

frontend api
    bind 127.0.0.1:{port}
    default_backend datasvc

backend datasvc
    balance roundrobin
    option httpchk
    http-check send meth GET uri /health/ready
    http-check expect status 200
    default-server check inter {inter}ms fall {fall} rise {rise}
    http-response set-header X-Served-By %s
{servers}
"""


class HAProxy:
    """``haproxy`` in the foreground on a free 127.0.0.1 port, balancing ``servers`` (name → port)."""

    def __init__(self, directory: Path, servers: Mapping[str, int]) -> None:
        binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
        if not Path(binary).exists():
            raise RuntimeError("haproxy is not installed: run scripts/apt-deps")
        self.binary = binary
        self.port = free_port()
        self.socket_path = directory / "haproxy.sock"
        self.config_path = directory / "haproxy.cfg"
        self.log_path = directory / "haproxy.log"
        self.config_path.write_text(
            _CONFIG.format(
                socket=self.socket_path,
                port=self.port,
                inter=CHECK_INTERVAL_MS,
                fall=FALL,
                rise=RISE,
                servers="\n".join(f"    server {name} 127.0.0.1:{port}" for name, port in servers.items()),
            )
        )
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> None:
        check = subprocess.run([self.binary, "-c", "-f", str(self.config_path)], capture_output=True)
        if check.returncode != 0:
            raise RuntimeError(f"haproxy refuses its configuration: {check.stderr.decode()}")
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [self.binary, "-db", "-f", str(self.config_path)], stdout=self._log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout
        while not self.socket_path.exists() or not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.process.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"haproxy did not start within {timeout} s; see {self.log_path}")
            time.sleep(0.02)

    def _answers(self) -> bool:
        try:
            self.command("show info")
        except OSError:
            return False
        return True

    def command(self, line: str) -> str:
        """One command on the admin socket; its whole answer."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(str(self.socket_path))
            s.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := s.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def status(self) -> dict[str, str]:
        """Each server's state as the balancer sees it: ``UP``, ``DOWN``, ``UP 1/2`` (rising), ..."""
        lines = self.command("show stat").lstrip("# ").splitlines()
        rows = csv.DictReader(line for line in lines if line)
        servers = (r for r in rows if r["pxname"] == "datasvc" and r["svname"] != "BACKEND")
        return {r["svname"]: r["status"] for r in servers}

    def wait_for(self, server: str, state: str, timeout: float = 20.0) -> float:
        """Wait until ``server`` is in ``state`` (exactly); the seconds it took."""
        started = time.monotonic()
        while (current := self.status().get(server)) != state:
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"haproxy: {server} is {current!r}, not {state!r}, after {timeout} s")
            time.sleep(0.02)
        return time.monotonic() - started

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        if self._log is not None:
            self._log.close()

    def __enter__(self) -> HAProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
