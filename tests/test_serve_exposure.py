"""Issue 14.1: no open mode beyond loopback. `datasvc serve` as operators run it, in a subprocess."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from datasvc.auth import hash_token
from datasvc.serve import is_loopback
from datasvc.settings import PROJECT_ROOT, Settings
from tests.support.servers import ProcessServer, environment, free_port

TOKEN = "network-token-0123456789"
CONFIG = f"reader users:read {hash_token(TOKEN)}"


def _refused(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run ``datasvc serve`` expecting it to exit by itself: its exit code and output."""
    done = subprocess.run(
        [sys.executable, "-m", "datasvc", "serve", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


def _running(env: dict[str, str], log: Path, *args: str) -> ProcessServer:
    """``datasvc serve ARGS`` with ``env`` as its whole environment, on a free port; ``with`` starts it."""
    return ProcessServer(None, log, env=env, command=[sys.executable, "-m", "datasvc", "serve", *args])


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_serve_on_a_network_address_without_tokens_exits_before_it_binds(settings, tmp_path, host):
    """No socket bound (the port is held by the test) and no database started (the data dir stays empty)."""
    data_dir = tmp_path / "embedded"
    env = environment(settings.with_overrides(database_url=None, data_dir=data_dir))
    with socket.socket(socket.AF_INET) as holder:
        holder.bind(("0.0.0.0", 0))  # taken: binding it would fail with "address already in use"
        holder.listen()
        port = holder.getsockname()[1]
        started = time.monotonic()
        code, output = _refused(env, "--host", host, "--port", str(port))
    assert code == 2, output
    assert f"refusing to serve on {host!r} with no bearer token configured" in output
    assert "DATASVC_AUTH_TOKENS" in output  # way out one: tokens
    assert "DATASVC_AUTH=off" in output  # way out two: open on purpose
    assert "in use" not in output  # it never tried to bind
    assert not data_dir.exists()  # ... nor to start the embedded database
    # Before anything slow: the check needs no database and no network (generous for a loaded CI box).
    assert time.monotonic() - started < 15


def test_auth_off_with_tokens_configured_is_refused(settings):
    env = environment(settings.with_overrides(auth="off", auth_tokens=CONFIG))
    code, output = _refused(env, "--port", str(free_port()))
    assert code == 2, output
    assert "DATASVC_AUTH=off, yet tokens are configured" in output


@pytest.mark.parametrize(
    ("overrides", "status"),
    [({"auth": "off"}, 404), ({"auth_tokens": CONFIG}, 401)],
    ids=["auth-off-serves-open", "tokens-required"],
)
def test_a_network_address_starts_with_tokens_or_the_explicit_opt_out(settings, tmp_path, overrides, status):
    log = tmp_path / "serve.log"
    with _running(environment(settings.with_overrides(**overrides)), log, "--host", "0.0.0.0") as server:
        user = f"{server.base_url}/api/v1/users/1"
        # No token: open mode answers the lookup itself (no such user); with tokens the caller is refused.
        assert httpx2.get(user, timeout=5).status_code == status
        if status == 401:
            assert (
                httpx2.get(user, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).status_code == 404
            )
    assert ("AUTHENTICATION IS OFF" in log.read_text()) == (overrides.get("auth") == "off")


def test_loopback_without_tokens_stays_open_for_a_first_run(settings, tmp_path):
    log = tmp_path / "serve.log"
    env = {k: v for k, v in environment(settings).items() if k != "DATASVC_HOST"}  # the default
    with _running(env, log) as server:
        assert httpx2.get(f"{server.base_url}/api/v1/users/1", timeout=5).status_code == 404
    assert "AUTHENTICATION IS OFF" in log.read_text()


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.53", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("", False),
        ("192.0.2.1", False),
        ("no-such-host.invalid", False),
    ],
)
def test_what_counts_as_loopback(host, loopback):
    assert is_loopback(host) is loopback


def test_settings_auth_accepts_on_and_off_only():
    assert Settings.from_env({"DATASVC_AUTH": "off"}).auth == "off"
    assert Settings.from_env({"DATASVC_AUTH": "ON"}).auth == "on"
    assert Settings.from_env({}).auth == "on"
    with pytest.raises(ValueError, match="DATASVC_AUTH='maybe': must be on or off"):
        Settings.from_env({"DATASVC_AUTH": "maybe"})
