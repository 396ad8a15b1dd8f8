"""Every registered statement must prepare against the migrated schema (the sqlc-style check)."""

import asyncio

import asyncpg

from datasvc.db import Database
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT
from datasvc.statements import check_statements, execute


async def _check(url: str, registry: Registry):
    conn = await asyncpg.connect(url)
    try:
        return await check_statements(conn, registry)
    finally:
        await conn.close()


def test_every_shipped_statement_prepares_against_the_migrated_schema(database_url):
    registry = Registry.load(PROJECT_ROOT / "sql")
    failures = asyncio.run(_check(database_url, registry))
    assert failures == [], "\n".join(f"{s.name} ({s.location}): {why}" for s, why in failures)


def test_a_statement_that_no_longer_matches_the_schema_fails(database_url, tmp_path):
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "stale.sql").write_text(
        "-- name: stale :one\n-- Reads a column that was dropped.\n-- params: id\n"
        "SELECT nickname FROM users WHERE id = $1\n"
    )
    failures = asyncio.run(_check(database_url, Registry.load(tmp_path)))
    assert [(s.name, why.split(":")[0]) for s, why in failures] == [("users.stale", "42703")]


async def test_statements_show_their_registry_name_in_pg_stat_activity(settings):
    settings = settings.with_overrides(application_name="datasvc-tag-test")
    db = await Database.connect(settings, Registry.load(PROJECT_ROOT / "sql"))
    try:
        async with db.connection() as conn:
            await execute(conn, db.registry["users.get_by_username"], ("nobody",))
            backend_pid = conn.get_server_pid()
            observer = await asyncpg.connect(settings.database_url)
            try:
                query = await observer.fetchval(
                    "SELECT query FROM pg_stat_activity WHERE pid = $1", backend_pid
                )
            finally:
                await observer.close()
    finally:
        await db.close()
    assert query.startswith("/* users.get_by_username */ SELECT")
