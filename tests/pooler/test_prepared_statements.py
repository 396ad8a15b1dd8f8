"""Prepared statements behind PgBouncer: the wrong-statement check with two processes, and the refusal.

asyncpg names its cached statements ``__asyncpg_stmt_<n>__`` from a counter per process, so two service
processes use the same names. PgBouncer 1.18 passes names through: in transaction mode a process's Bind
can reach a server connection where the *other* process prepared that name, and run its statement. The
check runs a reader and a writer process against one row through a PgBouncer with two server
connections, and counts results that came from the other process's statement.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import asyncpg
import orjson
import pytest
from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.pooler import PoolerRefused
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT, Settings
from datasvc.statements import execute
from tests.support.pgbouncer import PgBouncer, dbname, through
from tests.support.pgserver import APP_ROLE, as_role
from tests.support.values import HASH

WORKER = (sys.executable, "-m", "tests.support.statement_worker")
STATEMENTS_EACH = 300  # per process: ~1 s through PgBouncer; the 1.18 control shows hundreds of mix-ups


def _create_user(database_url: str) -> int:
    async def run() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            stmt = Registry.load(PROJECT_ROOT / "sql")["users.create"]
            row = await execute(conn, stmt, ("two@example.org", "two", HASH, None, None))
            return int(row["id"])
        finally:
            await conn.close()

    return asyncio.run(run())


def _two_processes(url: str, user_id: int, cache_size: int) -> dict[str, dict[str, Any]]:
    """A reader and a writer process, started together; what each counted."""
    procs = {
        role: subprocess.Popen(
            [*WORKER, url, statement, str(user_id), str(STATEMENTS_EACH), str(cache_size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=PROJECT_ROOT,
        )
        for role, statement in (("reader", "pooler.select_marked"), ("writer", "pooler.update_marked"))
    }
    try:
        for proc in procs.values():  # each has its pool open: start both at once
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"ready"
        for proc in procs.values():
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            proc.stdin.flush()
        results = {}
        for role, proc in procs.items():
            out, _ = proc.communicate(timeout=60)
            assert proc.returncode == 0, out
            results[role] = orjson.loads(out.strip().splitlines()[-1])
        return results
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()


@pytest.fixture
def narrow_bouncer(request: pytest.FixtureRequest) -> Iterator[PgBouncer]:
    """A PgBouncer of the version asked for with two server connections: clients share them constantly."""
    with PgBouncer(request.param, pool_size=2) as bouncer:
        yield bouncer


@pytest.mark.parametrize(
    ("narrow_bouncer", "cache_size"),
    [
        pytest.param("1.24", 100, id="pgbouncer-1.24-cache-on"),
        pytest.param("1.18", 0, id="pgbouncer-1.18-cache-off"),
    ],
    indirect=["narrow_bouncer"],
)
def test_two_processes_never_run_each_others_statements(narrow_bouncer, cache_size, database_url):
    user_id = _create_user(database_url)
    results = _two_processes(narrow_bouncer.url(dbname(database_url), APP_ROLE), user_id, cache_size)
    print(f"PgBouncer {narrow_bouncer.version}, cache {cache_size}: {results}")
    for role, counted in results.items():
        assert counted == {"own": STATEMENTS_EACH, "foreign": 0, "errors": {}}, (role, results)


@pytest.mark.parametrize("narrow_bouncer", ["1.18"], indirect=True)
def test_control_pgbouncer_118_with_the_cache_on_mixes_statements_up(narrow_bouncer, database_url):
    """The control: the same check fails where the service refuses to start (next test)."""
    user_id = _create_user(database_url)
    results = _two_processes(narrow_bouncer.url(dbname(database_url), APP_ROLE), user_id, 100)
    print(f"PgBouncer 1.18, cache 100: {results}")
    wrong = sum(r["foreign"] + sum(r["errors"].values()) for r in results.values())
    assert wrong > 0, results


@pytest.mark.parametrize(
    ("version", "prepared_statements"),
    [
        pytest.param("1.18", True, id="pgbouncer-1.18"),
        pytest.param("1.24", False, id="pgbouncer-1.24-max_prepared_statements-0"),
    ],
)
def test_a_pooler_passing_statement_names_through_is_refused_with_the_cache_on(
    plain_settings: Settings, database_url: str, version: str, prepared_statements: bool
) -> None:
    with PgBouncer(version, prepared_statements=prepared_statements) as bouncer:
        app = create_app(through(plain_settings, bouncer, database_url, 100))
        with pytest.raises(PoolerRefused, match=r"Set DATASVC_STATEMENT_CACHE_SIZE=0"), TestClient(app):
            pass


def test_a_direct_connection_in_transaction_mode_keeps_the_cache(plain_settings: Settings, database_url: str):
    """No pooler in between (the announced process id is the backend's): nothing to refuse."""
    direct = plain_settings.with_overrides(
        database_url=as_role(database_url, APP_ROLE), pool_mode="transaction"
    )
    with TestClient(create_app(direct)) as client:
        assert client.get("/api/v1/users/1").status_code == 404
