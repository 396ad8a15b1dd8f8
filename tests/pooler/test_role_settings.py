"""Transaction mode takes the timeouts and plan_cache_mode from the role, and refuses to start without them.

Through PgBouncer no session SET and no startup parameter but application_name reaches the server, so
what bounds a statement is the role's setting (migration 0008). The refusals use a per-database role
setting (``ALTER ROLE datasvc_app IN DATABASE <this test's database>``), which wins over the role-wide
one and goes away with the database: the cluster-wide role other tests use is never touched.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import asyncpg
import pytest
from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.connections import server_settings
from datasvc.db import Database
from datasvc.pooler import PoolerRefused
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT, Settings
from datasvc.statements import execute
from tests.support import load
from tests.support.pgbouncer import PgBouncer, through
from tests.support.servers import environment, free_port


def test_transaction_mode_sends_only_application_name_at_connect() -> None:
    assert server_settings(Settings(pool_mode="transaction")) == {"application_name": "datasvc"}
    assert set(server_settings(Settings())) == {
        "application_name",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
    }


async def test_the_roles_settings_are_in_force_on_every_server_connection(
    plain_settings: Settings, database_url: str, bouncers: dict[str, PgBouncer]
) -> None:
    """The service's own start-up statement, 40 times from 8 connections: the role's values each time."""
    settings = through(plain_settings, bouncers["1.24"], database_url, 100).with_overrides(pool_max_size=8)
    db = await Database.connect(settings, Registry.load(settings.sql_dir))
    try:
        rows = await asyncio.gather(*(db.run("session.settings_in_force") for _ in range(40)))
    finally:
        await db.close()
    seen = {
        (r["statement_timeout"], r["lock_timeout"], r["idle_in_transaction_session_timeout"]) for r in rows
    }
    assert seen == {("5000", "2000", "10000")}
    assert {r["plan_cache_mode"] for r in rows} == {"auto"}
    assert {r["role_name"] for r in rows} == {"datasvc_app"}


async def test_the_roles_statement_timeout_cancels_a_statement_through_the_pooler(
    plain_settings: Settings, database_url: str, bouncers: dict[str, PgBouncer]
) -> None:
    async with load.admin(database_url) as admin:
        await admin.run("pooler.role_short_timeouts_here")
    settings = through(plain_settings, bouncers["1.24"], database_url, 100).with_overrides(
        statement_timeout=0.3
    )
    app = create_app(settings)
    with TestClient(app):  # the start-up check accepts a role whose timeouts match the settings
        pass
    db = await Database.connect(settings, Registry.load(settings.sql_dir))
    try:
        # Canceled by the server (QueryCanceledError, 57014) at 0.3 s: a sleep that ran its 3 s would
        # raise nothing, and the client's own command timeout raises TimeoutError, so no clock is needed.
        with pytest.raises(asyncpg.QueryCanceledError):
            async with db.connection() as conn:
                await execute(conn, load.TEST_SQL["pooler.sleep"], (3.0,))
    finally:
        await db.close()


@pytest.mark.parametrize("version", ["1.24", "1.18"])
def test_a_role_without_the_timeouts_is_refused_at_start_up(
    plain_settings: Settings, database_url: str, bouncers: dict[str, PgBouncer], version: str
) -> None:
    asyncio.run(_without_timeouts(database_url))
    cache = 100 if version == "1.24" else 0
    app = create_app(through(plain_settings, bouncers[version], database_url, cache))
    message = r"statement_timeout=0ms .*ALTER ROLE datasvc_app SET statement_timeout = '5000ms'"
    with pytest.raises(PoolerRefused, match=message), TestClient(app):
        pass


async def _without_timeouts(database_url: str) -> None:
    async with load.admin(database_url) as admin:
        await admin.run("pooler.role_without_timeouts_here")


def test_settings_that_differ_from_the_roles_are_refused(
    plain_settings: Settings, database_url: str, bouncers: dict[str, PgBouncer]
) -> None:
    settings = through(plain_settings, bouncers["1.24"], database_url, 100).with_overrides(lock_timeout=1.0)
    refused = pytest.raises(PoolerRefused, match=r"lock_timeout=2000ms .*DATASVC_LOCK_TIMEOUT=1.0")
    with refused, TestClient(create_app(settings)):
        pass


def test_datasvc_serve_exits_naming_the_alter_role_that_fixes_it(
    plain_settings: Settings, database_url: str, bouncers: dict[str, PgBouncer]
) -> None:
    """The operator's path: `datasvc serve` stops before it listens, exit 3, the fix in its log."""
    asyncio.run(_without_timeouts(database_url))
    settings = through(plain_settings, bouncers["1.24"], database_url, 100).with_overrides(port=free_port())
    run = subprocess.run(
        [sys.executable, "-m", "datasvc", "serve"],
        env=environment(settings),
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 3, run.stdout + run.stderr
    assert "ALTER ROLE datasvc_app SET statement_timeout = '5000ms'" in run.stdout + run.stderr
