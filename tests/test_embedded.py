"""The embedded default: `datasvc serve` with no DATABASE_URL starts, migrates and serves on its own."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx
import pytest

from datasvc.embedded import embedded

HASH = "$2b$12$" + "a" * 53


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def data_dir():
    # PostgreSQL runs as an unprivileged account when we are root: it must be able to reach this folder.
    path = Path(tempfile.mkdtemp(prefix="datasvc-embedded-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_serve_without_database_url_starts_a_private_postgres(data_dir):
    port, pg_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env |= {
        "DATASVC_DATA_DIR": str(data_dir),
        "DATASVC_EMBEDDED_PORT": str(pg_port),
        "DATASVC_PORT": str(port),
    }
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "datasvc", "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        base = f"http://127.0.0.1:{port}"
        ready = None
        while time.monotonic() - started < 60 and proc.poll() is None:
            try:
                ready = httpx.get(base + "/health/ready", timeout=1)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        assert ready is not None, "service never answered"
        assert ready.status_code == 200, ready.text
        created = httpx.post(
            base + "/api/v1/users", json={"email": "e@x.io", "username": "embedded", "hashed_password": HASH}
        )
        assert created.status_code == 201, created.text
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, output
    assert "using embedded PostgreSQL" in output
    assert f"127.0.0.1:{pg_port}/datasvc" in output
    # serve stopped the cluster it started
    assert not embedded(data_dir, pg_port)._is_running()
