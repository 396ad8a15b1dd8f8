"""The listing's plans on a table big enough for the planner to care (120k rows).

A first page or a deep keyset page must read a handful of index entries: no sequential scan of users and
no sort of the table. And the plan must stay that way on the sixth execution of the prepared statement,
when PostgreSQL would otherwise be free to switch to a generic plan.
"""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psycopg
import pytest

from datasvc.connections import server_settings
from datasvc.registry import Registry
from datasvc.settings import Settings
from datasvc.sqlfiles import ExpectPlanCache, PlanCache
from datasvc.statements import execute
from tests.support.values import HASH

ROWS = 120_000
DEEP = 108_000  # 90% of the way down
SORTS = ["created_at", "updated_at", "username", "email", "full_name", "id"]
PLANS = Registry.load(Path(__file__).parents[1] / "sql" / "plans")


@pytest.fixture(scope="module")
def big_database_url(template_db: str) -> Iterator[str]:
    """One migrated database with ROWS users (about 1 in 10 without a full_name), shared by this module."""
    from pytest_postgresql.janitor import DatabaseJanitor

    from tests.support.pgserver import server as _server
    from tests.support.pgserver import url_for

    name = f"datasvc_plans_{template_db}"
    with DatabaseJanitor(dbname=name, template_dbname=template_db, **_server()):  # type: ignore[arg-type]
        url = url_for(name)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                """
                INSERT INTO users (email, username, hashed_password, full_name, status, is_verified,
                                   created_at, updated_at)
                SELECT 'p' || i || '@example.com', 'plan_' || i, %(hash)s,
                       CASE WHEN i %% 10 = 0 THEN NULL ELSE 'Person ' || (i %% 997) END,
                       (ARRAY['active', 'active', 'inactive', 'suspended'])[1 + i %% 4], i %% 3 = 0,
                       timestamptz '2023-01-01' + i * interval '1 minute',
                       timestamptz '2024-01-01' + (i %% 5000) * interval '1 minute'
                FROM generate_series(1, %(n)s) AS i
                """,
                {"hash": HASH, "n": ROWS},
            )
            conn.execute("VACUUM (ANALYZE) users")
        yield url


@pytest.fixture
async def conn(big_database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection with the session settings the service's pool uses."""
    settings = Settings(database_url=big_database_url)
    connection = await asyncpg.connect(big_database_url, server_settings=server_settings(settings))
    yield connection
    await connection.close()


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.load(Settings().sql_dir)


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _assert_cheap(plan: dict[str, Any], what: str) -> None:
    for node in _nodes(plan):
        assert not (node["Node Type"] == "Seq Scan" and node.get("Relation Name") == "users"), (what, plan)
        assert node["Node Type"] != "Sort", (what, plan)
    users_scans = [n for n in _nodes(plan) if n.get("Relation Name") == "users"]
    assert users_scans, what
    assert all(n["Node Type"] in ("Index Scan", "Index Only Scan") for n in users_scans), (what, plan)


async def _explain(conn: asyncpg.Connection, sql: str, *args: Any) -> dict[str, Any]:
    raw = await conn.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    plan: dict[str, Any] = (orjson.loads(raw) if isinstance(raw, str) else raw)[0]["Plan"]
    return plan


async def _deep_key(conn: asyncpg.Connection, sort_by: str, direction: str) -> tuple[Any, int]:
    """The (key, id) of the row DEEP rows into this order: where a deep cursor points."""
    key = "ARRAY[full_name]" if sort_by == "full_name" else sort_by
    row = await conn.fetchrow(
        f"SELECT {key} AS key, id FROM users ORDER BY {key} {direction}, id {direction} OFFSET $1 LIMIT 1",
        DEEP,
    )
    return row["key"], row["id"]


@pytest.mark.parametrize("sort_by", SORTS)
@pytest.mark.parametrize("direction", ["asc", "desc"])
@pytest.mark.parametrize("count", ["none", "estimated"])
async def test_first_and_deep_keyset_pages_read_only_an_index_range(
    conn, registry, sort_by, direction, count
):
    stmt = registry[f"users.list__{sort_by}_{direction}"]
    first = await _explain(conn, stmt.sql, None, None, None, None, count, 21, 0, None, None)
    _assert_cheap(first, "first page")
    key, row_id = await _deep_key(conn, sort_by, direction)
    deep = await _explain(conn, stmt.sql, None, None, None, None, count, 21, 0, key, row_id)
    _assert_cheap(deep, "deep keyset page")
    rows = await execute(conn, stmt, (None, None, None, None, count, 21, 0, key, row_id))
    assert len(rows) == 21


async def _auto_explain(conn: asyncpg.Connection) -> list[str]:
    """Every plan the session runs from now on, as auto_explain's JSON notices."""
    notices: list[str] = []
    conn.add_log_listener(lambda _conn, message: notices.append(message.message))
    try:
        await conn.execute("LOAD 'auto_explain'")
    except asyncpg.UndefinedFileError:  # a contrib module: Debian's server has it, the embedded wheel's not
        pytest.skip("this PostgreSQL has no auto_explain, which shows the plan each execution ran")
    await conn.execute(
        "SET auto_explain.log_min_duration = 0; SET auto_explain.log_level = notice; "
        "SET auto_explain.log_format = json; SET auto_explain.log_analyze = on"
    )
    return notices


# Arguments for each statement declared ``expect-plan-cache: generic``: a row of the big table. A statement
# that declares it and has no arguments here fails the test, so the declaration is never left unchecked.
GENERIC_ARGS: dict[str, tuple[Any, ...]] = {
    "users.get_by_id": (5,),
    "users.get_by_username": ("plan_5",),
    "users.get_by_email": ("p5@example.com",),
    "auth.lookup": ("plan_5",),
    "users.update": (5, '{"bio": "x"}', None),
    "users.delete": (5, None),
}
EXPECT_GENERIC = sorted(
    s.name
    for s in Registry.load(Settings().sql_dir).values()
    if s.expect_plan_cache is ExpectPlanCache.GENERIC
)


def test_the_lookups_and_key_writes_expect_a_generic_plan():
    assert {"users.get_by_id", "users.get_by_username", "auth.lookup", "users.update"} <= set(EXPECT_GENERIC)


@pytest.mark.parametrize("name", EXPECT_GENERIC)
async def test_expect_plan_cache_generic_holds_from_the_sixth_execution(conn, registry, name):
    """``expect-plan-cache: generic``: asyncpg's named statement, on a session with PostgreSQL's default
    ``plan_cache_mode = auto``, is planned with its values five times, then reuses one generic plan: from
    the sixth execution on it costs no planning. Writes run in a transaction that is rolled back."""
    stmt = registry[name]
    assert stmt.plan_cache is PlanCache.AUTO
    assert name in GENERIC_ARGS, f"{stmt.location}: declares expect-plan-cache, add its arguments here"
    transaction = conn.transaction()
    await transaction.start()
    try:
        for _ in range(7):
            await execute(conn, stmt, GENERIC_ARGS[name])
        counts = await execute(conn, PLANS["prepared.plan_counts"], (stmt.text,))
    finally:
        await transaction.rollback()
    assert (counts["custom_plans"], counts["generic_plans"]) == (5, 2)


@pytest.mark.parametrize("sort_by", ["created_at", "full_name"])
@pytest.mark.parametrize("count", ["none", "exact"])
async def test_the_sixth_execution_keeps_a_custom_plan(conn, registry, sort_by, count):
    """Five first pages, then deep keyset pages: a generic plan would filter the cursor, not seek to it.

    Sent as the service sends it (``plan-cache: custom``: PostgreSQL's unnamed statement), on a session
    with PostgreSQL's default ``plan_cache_mode = auto``; auto_explain shows the plan each execution ran.
    """
    notices = await _auto_explain(conn)
    stmt = registry[f"users.list__{sort_by}_desc"]
    key, row_id = await _deep_key(conn, sort_by, "desc")
    assert stmt.plan_cache is PlanCache.CUSTOM
    for _ in range(5):
        await execute(conn, stmt, (None, None, None, None, count, 21, 0, None, None))
    for _ in range(2):
        await execute(conn, stmt, (None, None, None, None, count, 21, 0, key, row_id))
    await conn.execute("SET auto_explain.log_min_duration = -1")
    plans = [orjson.loads(n[n.index("{") :])["Plan"] for n in notices if '"Plan"' in n]
    for plan in plans[-2:]:
        (limit,) = [n for n in _nodes(plan) if n["Node Type"] == "Limit"]
        scans = [n for n in _nodes(limit) if n.get("Relation Name") == "users"]
        assert [n["Node Type"] for n in scans] == ["Index Scan"], plan
        assert "ROW(" in scans[0].get("Index Cond", ""), f"the cursor is not an index bound: {plan}"
        assert scans[0].get("Rows Removed by Filter", 0) == 0, plan
        assert scans[0]["Actual Rows"] <= 21, plan


@pytest.mark.parametrize("count", ["none", "exact"])
async def test_a_rare_search_term_uses_the_trigram_index(conn, registry, count):
    stmt = registry["users.list__created_at_desc"]
    plan = await _explain(conn, stmt.sql, None, None, None, "%plan\\_11999%", count, 21, 0, None, None)
    nodes = list(_nodes(plan))
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), plan
    assert {n.get("Index Name") for n in nodes if n["Node Type"] == "Bitmap Index Scan"} == {
        "users_search_text_trgm_idx"
    }, plan


async def test_a_rare_search_with_an_exact_total_scans_the_trigram_index_once(conn, registry):
    stmt = registry["users.list_search__created_at_desc"]
    plan = await _explain(conn, stmt.sql, None, None, None, "%plan\\_11999%", 21, 0, None, None)
    nodes = list(_nodes(plan))
    assert not any(n["Node Type"] == "Seq Scan" for n in nodes), plan
    bitmap = [n.get("Index Name") for n in nodes if n["Node Type"] == "Bitmap Index Scan"]
    assert bitmap == ["users_search_text_trgm_idx"], plan
