"""Sending one registry statement on one connection: the result its kind says, timed and counted.

`datasvc.db` decides which connection and whether to try again; this module only sends. Used directly
where a caller already holds a connection (the pooler probe, `datasvc sql explain`, a transaction).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import asyncpg

from datasvc.context import request_timing
from datasvc.registry import Registry
from datasvc.sqlfiles import Kind, PlanCache, Statement

if TYPE_CHECKING:
    from datasvc.metrics import Metrics


async def execute(
    conn: asyncpg.Connection,
    stmt: Statement,
    args: tuple[Any, ...],
    metrics: Metrics | None = None,
    target: str = "primary",
) -> Any:
    """Run ``stmt`` with ``args`` on ``conn``; its time goes to ``metrics`` (by target) and the request."""
    if len(args) != len(stmt.params):
        raise TypeError(f"{stmt.name} takes {len(stmt.params)} parameters ({stmt.params}), got {len(args)}")
    timing = request_timing.get()
    span = None
    if timing is not None and timing.trace is not None and timing.trace.sampled:
        span = timing.trace.statement(stmt.name, target)
    started = time.perf_counter()
    try:
        if span is not None:  # a one-off text (its traceparent): never a cached prepared statement
            return await _execute_unnamed(conn, stmt, args, span.sql(stmt.text))
        if stmt.plan_cache is PlanCache.CUSTOM:
            return await _execute_unnamed(conn, stmt, args, stmt.text)
        if stmt.kind is Kind.ONE:
            return await conn.fetchrow(stmt.text, *args)
        if stmt.kind is Kind.MANY:
            return await conn.fetch(stmt.text, *args)
        if stmt.kind is Kind.VALUE:
            return await conn.fetchval(stmt.text, *args)
        return await conn.execute(stmt.text, *args)
    except BaseException as exc:
        if metrics is not None:
            metrics.query_failed(stmt.name, exc, target)
        if span is not None:
            span.failed(exc)
        raise
    finally:
        elapsed = time.perf_counter() - started
        if metrics is not None:
            metrics.observe_query(stmt.name, elapsed, target)
        if timing is not None:
            timing.db_seconds += elapsed
            timing.statements += 1
        if span is not None:
            span.end()


async def _execute_unnamed(
    conn: asyncpg.Connection, stmt: Statement, args: tuple[Any, ...], text: str
) -> Any:
    """``-- plan-cache: custom`` (or a traced ``text``): sent as PostgreSQL's unnamed statement, planned
    for its values every time.

    A named prepared statement (asyncpg's cache, every other statement) may switch to a generic plan after
    five executions under ``plan_cache_mode = auto``; the unnamed statement is parsed anew on each use, so
    it never has five custom plans behind it and is always planned with its values (unless a role forces
    generic plans) — with no session ``SET``, which a transaction pooler would leak to other clients.
    asyncpg describes it first (types, codecs), then, marked unprepared, sends Parse, Bind and Execute
    under one Sync, so a transaction pooler cannot hand the Bind to another server than the Parse.
    """
    prepared = await conn.prepare(text, name="")
    # A private API, pinned in pyproject.toml and guarded by tests/test_private_apis.py: asyncpg's own path
    # when its statement cache is off (PgBouncer).
    prepared._state.mark_unprepared()
    if stmt.kind is Kind.ONE:
        return await prepared.fetchrow(*args)
    if stmt.kind is Kind.MANY:
        return await prepared.fetch(*args)
    if stmt.kind is Kind.VALUE:
        return await prepared.fetchval(*args)
    await prepared.fetch(*args)
    return prepared.get_statusmsg()


async def check_statements(conn: asyncpg.Connection, registry: Registry) -> list[tuple[Statement, str]]:
    """Prepare every statement against the live schema (nothing runs); return those that fail and why."""
    failures: list[tuple[Statement, str]] = []
    for stmt in registry.values():
        try:
            await conn.prepare(stmt.text)
        except asyncpg.PostgresError as exc:
            failures.append((stmt, f"{exc.sqlstate}: {exc}"))
    return failures
