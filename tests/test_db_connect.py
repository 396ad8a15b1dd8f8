"""Issue 11.9: a database that refuses the service's connections is an outage (503), never a 500.

Each case is a real refusal from a real PostgreSQL: a database name that does not exist (3D000), a
password the server rejects (28P01), a role that may not log in (28000), a role at its connection limit
(53300), a role without CONNECT on the database (42501). Every call is 503 ``database-unavailable`` with
``Retry-After``, and ``/health/ready`` says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from psycopg import sql
from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.embedded import find_bindir, unprivileged_account
from datasvc.settings import Settings


def _with(url: str, *, user: str | None = None, dbname: str | None = None) -> str:
    """``url`` with another role (no password: the shared server trusts 127.0.0.1) or database."""
    parts = urlsplit(url)
    netloc = f"{user or parts.username}@{parts.hostname}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, "/" + (dbname or parts.path.lstrip("/")), "", ""))


def _assert_refused(settings: Settings, why: str, sqlstate: str) -> None:
    with TestClient(create_app(settings)) as client:
        for path in ("/api/v1/users/1", "/api/v1/users/by_username/nobody", "/health/ready"):
            response = client.get(path)
            assert response.status_code == 503, (path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "1"
            body = response.json()
            assert body["type"] == "urn:datasvc:problem:database-unavailable", body
            assert why in body["detail"], body
            assert f"SQLSTATE {sqlstate}" in body["detail"], body


@pytest.fixture
def role(database_url: str) -> Iterator[str]:
    """A login role of this test only (roles are cluster-wide: never touch a shared one)."""
    name = f"datasvc_refused_{os.getpid()}_{os.urandom(3).hex()}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        yield name
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def _alter(database_url: str, statement: str, role: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        dbname = urlsplit(database_url).path.lstrip("/")
        conn.execute(sql.SQL(statement).format(role=sql.Identifier(role), db=sql.Identifier(dbname)))


def test_missing_database_is_503_saying_so(settings, database_url):
    missing = _with(database_url, dbname=f"datasvc_missing_{os.getpid()}")
    _assert_refused(settings.with_overrides(database_url=missing), "does not exist", "3D000")


def test_role_that_may_not_log_in_is_503(settings, database_url, role):
    _alter(database_url, "ALTER ROLE {role} NOLOGIN", role)
    refused = settings.with_overrides(database_url=_with(database_url, user=role))
    _assert_refused(refused, "refused the role", "28000")


def test_role_at_its_connection_limit_is_503(settings, database_url, role):
    _alter(database_url, "ALTER ROLE {role} CONNECTION LIMIT 0", role)
    refused = settings.with_overrides(database_url=_with(database_url, user=role))
    _assert_refused(refused, "too many connections", "53300")


def test_role_without_connect_privilege_is_503(settings, database_url, role):
    _alter(database_url, "REVOKE CONNECT ON DATABASE {db} FROM PUBLIC", role)
    refused = settings.with_overrides(database_url=_with(database_url, user=role))
    _assert_refused(refused, "no CONNECT privilege", "42501")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def password_cluster() -> Iterator[str]:
    """A private PostgreSQL that checks passwords (scram-sha-256): the shared test server trusts 127.0.0.1.

    Yields the URL of a uniquely named role with a known password; about 2 s to initialise and start.
    """
    bindir, run_as = find_bindir(), unprivileged_account()
    root = Path(tempfile.mkdtemp(prefix="datasvc-scram-"))
    root.chmod(0o777)
    pgdata, pwfile, port = root / "pgdata", root / "pw", _free_port()
    pwfile.write_text("superpass\n")
    pwfile.chmod(0o644)

    def run(*args: str) -> None:
        cmd = [*(["runuser", "-u", run_as, "--"] if run_as else []), *args]
        subprocess.run(cmd, check=True, capture_output=True)

    run(str(bindir / "initdb"), "-D", str(pgdata), "-U", "postgres", "--auth=scram-sha-256",
        f"--pwfile={pwfile}", "-E", "UTF8", "--no-locale")  # fmt: skip
    run(str(bindir / "pg_ctl"), "-D", str(pgdata), "-l", str(root / "log"), "-w", "-t", "30",
        "-o", f"-p {port} -c listen_addresses=127.0.0.1 -k {root} -c fsync=off", "start")  # fmt: skip
    try:
        superuser = f"postgresql://postgres:superpass@127.0.0.1:{port}/postgres"
        name = f"datasvc_pw_{os.getpid()}"
        with psycopg.connect(superuser, autocommit=True) as conn:
            create = sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'right-password'")
            conn.execute(create.format(sql.Identifier(name)))
        yield f"postgresql://{name}:right-password@127.0.0.1:{port}/postgres"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.slow
def test_wrong_password_is_503_saying_so(settings, password_cluster):
    with psycopg.connect(password_cluster):  # the right password gets in: the refusal is the password's
        pass
    wrong = password_cluster.replace(":right-password@", ":wrong-password@")
    _assert_refused(settings.with_overrides(database_url=wrong), "refused the password", "28P01")
