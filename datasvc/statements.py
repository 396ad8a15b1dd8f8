"""Sending one registry statement on one connection: the result its kind says, timed and counted.

`datasvc.db` decides which connection and whether to try again; this module only sends. Used directly
where a caller already holds a connection (the pooler probe, `datasvc sql explain`, a transaction).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import asyncpg

from datasvc import unnamed
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
            return await unnamed.execute(conn, stmt.kind, stmt.text, span.sql(stmt.text), args)
        if stmt.plan_cache is PlanCache.CUSTOM:  # planned for its values every time (datasvc.unnamed)
            return await unnamed.execute(conn, stmt.kind, stmt.text, stmt.text, args)
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


async def check_statements(conn: asyncpg.Connection, registry: Registry) -> list[tuple[Statement, str]]:
    """Prepare every statement against the live schema (nothing runs); return those that fail and why."""
    failures: list[tuple[Statement, str]] = []
    for stmt in registry.values():
        try:
            await conn.prepare(stmt.text)
        except asyncpg.PostgresError as exc:
            failures.append((stmt, f"{exc.sqlstate}: {exc}"))
    return failures
