"""The connection pool and the one way to run a registry statement.

`Database` lives in the Starlette lifespan state, never in a module global. Every acquire is bounded by
``acquire_timeout``; every statement is sent by its registry name's tagged text, so asyncpg's prepared
statement cache re-uses one server-side plan per statement and connection. Time spent in the database is
added to the request's `Timing`, which the access log and ``Server-Timing`` report.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from datasvc.errors import PoolTimeout
from datasvc.registry import Kind, Registry, Statement

if TYPE_CHECKING:
    from datasvc.settings import Settings

log = logging.getLogger("datasvc.db")


@dataclass(slots=True)
class Timing:
    """Database time of one request, in seconds, and how many statements it ran."""

    db_seconds: float = 0.0
    statements: int = 0


request_timing: ContextVar[Timing | None] = ContextVar("request_timing", default=None)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # orjson for json/jsonb both ways: faster than the stdlib and the same encoder as the responses.
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename,
            schema="pg_catalog",
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            format="text",
        )


def server_settings(settings: Settings) -> dict[str, str]:
    """Session settings sent at connect time; the server enforces the timeouts even if we hang."""
    return {
        "application_name": settings.application_name,
        "statement_timeout": str(int(settings.statement_timeout * 1000)),
        "lock_timeout": str(int(settings.lock_timeout * 1000)),
        "idle_in_transaction_session_timeout": str(int((settings.statement_timeout + 5) * 1000)),
    }


class Database:
    """A pool plus the registry: handlers ask for statements by name, never by SQL text."""

    def __init__(self, pool: asyncpg.Pool, registry: Registry, settings: Settings) -> None:
        self.pool = pool
        self.registry = registry
        self.settings = settings

    @classmethod
    async def connect(cls, settings: Settings, registry: Registry) -> Database:
        """Open the pool; if the database is down, start empty and connect on first use."""
        if settings.database_url is None:
            raise ValueError("settings.database_url is required to open the pool")
        try:
            pool = await _create_pool(settings, min_size=settings.pool_min_size)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning(
                "database unreachable at start-up; serving 503 until it answers",
                extra={"error": type(exc).__name__},
            )
            pool = await _create_pool(settings, min_size=0)
        return cls(pool, registry, settings)

    async def close(self) -> None:
        """Close gracefully within the shutdown bound, then terminate whatever is left."""
        try:
            await asyncio.wait_for(self.pool.close(), timeout=self.settings.shutdown_timeout)
        except TimeoutError:
            log.warning("pool did not close in time; terminating connections")
            self.pool.terminate()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection, waited for at most ``acquire_timeout`` seconds."""
        try:
            conn = await self.pool.acquire(timeout=self.settings.acquire_timeout)
        except TimeoutError:
            raise PoolTimeout(self.settings.acquire_timeout) from None
        try:
            yield conn
        finally:
            await self.pool.release(conn)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """A connection inside one transaction: commit on success, roll back on any exception."""
        async with self.connection() as conn, conn.transaction():
            yield conn

    async def run(self, conn: asyncpg.Connection, name: str, *args: Any) -> Any:
        """Run statement ``name`` on ``conn`` with positional parameters in header order."""
        stmt = self.registry[name]
        return await execute(conn, stmt, args)

    async def fetch(self, name: str, *args: Any) -> Any:
        """Run one statement on a pooled connection, outside any explicit transaction."""
        stmt = self.registry[name]
        async with self.connection() as conn:
            return await execute(conn, stmt, args)


async def execute(conn: asyncpg.Connection, stmt: Statement, args: tuple[Any, ...]) -> Any:
    if len(args) != len(stmt.params):
        raise TypeError(f"{stmt.name} takes {len(stmt.params)} parameters ({stmt.params}), got {len(args)}")
    started = time.perf_counter()
    try:
        if stmt.kind is Kind.ONE:
            return await conn.fetchrow(stmt.text, *args)
        if stmt.kind is Kind.MANY:
            return await conn.fetch(stmt.text, *args)
        if stmt.kind is Kind.VALUE:
            return await conn.fetchval(stmt.text, *args)
        return await conn.execute(stmt.text, *args)
    finally:
        timing = request_timing.get()
        if timing is not None:
            timing.db_seconds += time.perf_counter() - started
            timing.statements += 1


async def _create_pool(settings: Settings, *, min_size: int) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.database_url,
        min_size=min_size,
        max_size=settings.pool_max_size,
        timeout=settings.connect_timeout,
        # Client-side bound a little above the server's statement_timeout: catches a stalled network.
        command_timeout=settings.statement_timeout + 1.0,
        server_settings=server_settings(settings),
        init=_init_connection,
        max_inactive_connection_lifetime=300.0,
    )


async def check_statements(conn: asyncpg.Connection, registry: Registry) -> list[tuple[Statement, str]]:
    """Prepare every statement against the live schema (nothing runs); return those that fail and why."""
    failures: list[tuple[Statement, str]] = []
    for stmt in registry.values():
        try:
            await conn.prepare(stmt.text)
        except asyncpg.PostgresError as exc:
            failures.append((stmt, f"{exc.sqlstate}: {exc}"))
    return failures
