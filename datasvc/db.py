"""The one way to run a registry statement: on which server, and how often.

`Database` lives in the Starlette lifespan state, never in a module global. Connections come from
`datasvc.pool` (one `Pool` per server: who gets the next connection, what becomes of it afterwards).
Sending the statement is `datasvc.statements.execute`: by its registry name's tagged text, so asyncpg's
prepared statement cache re-uses one server-side plan per statement and connection, with its time added
to the request's `Timing`, which the access log and ``Server-Timing`` report.

Retries are narrow on purpose:

- a statement or transaction that PostgreSQL rolled back (40001 serialization failure, 40P01 deadlock,
  0A000 stale cached plan) did nothing, so it is run again, at most ``transaction_retries`` times, with
  a short jittered pause;
- a statement whose SQL header declares ``-- retry: safe`` (reviewed with the SQL: reads) whose
  connection died under it is run once more on a fresh connection: reading twice is harmless;
- a write whose connection died is never retried: it may have committed, and only the caller can tell.

A connection that died is closed and its pool expired (`Pool.release`), so the pool heals without
serving another request a dead connection (docs/reliability.md). So is one whose server refused a write
as read-only (25006): after a failover the old connections may still reach the demoted server, and
asyncpg checks ``target_session_attrs`` only when it connects; the refused statement did nothing, so it is
run once more on a fresh connection, which finds the new primary.

Replicas (``DATASVC_REPLICA_URLS``, `datasvc.replicas`): a statement declared ``-- route: replica`` run by
`Database.run` goes to a replica in rotation, everything else and everything in a transaction to the
primary. A read the replica could not answer (connection lost or refused, recovery conflict 40001/40P01,
pool timeout) takes the replica out of rotation and runs on the primary: no read fails because a
replica did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from asyncpg import exceptions as pg

from datasvc.context import UNREACHABLE, request_caller, request_min_lsn
from datasvc.dberrors import CONNECTION_LOST, READ_ONLY
from datasvc.errors import DatabaseUnavailable, PoolTimeout
from datasvc.pool import Pool
from datasvc.poolstats import PoolCollector
from datasvc.registry import Registry
from datasvc.replicas import Replica, ReplicaSet
from datasvc.sqlfiles import Retry, Route, Statement
from datasvc.statements import execute

if TYPE_CHECKING:
    from datasvc.metrics import Metrics
    from datasvc.settings import Settings

log = logging.getLogger("datasvc.db")

T = TypeVar("T")

# PostgreSQL rolled the whole transaction back: running it again from the start is safe.
# InvalidCachedStatementError (0A000, "cached plan must not change result type") also aborts the
# transaction; asyncpg re-prepares on its own outside transactions, inside one it is ours to rerun.
ROLLED_BACK: tuple[type[BaseException], ...] = (
    pg.SerializationError,
    pg.DeadlockDetectedError,
    pg.InvalidCachedStatementError,
)

# A replica could not answer a read, but the primary may: connection lost or refused, a recovery conflict
# (40001 "canceling statement due to conflict with recovery", 40P01 for buffer pins), the standby shutting
# down (57P01-57P03), its pool full, or a network that went silent.
REPLICA_UNUSABLE: tuple[type[BaseException], ...] = (
    *CONNECTION_LOST,
    pg.SerializationError,
    pg.DeadlockDetectedError,
    pg.OperatorInterventionError,
    DatabaseUnavailable,
    PoolTimeout,
    TimeoutError,
)


class Database:
    """The primary's pool, the replicas and the registry: handlers ask for statements by name, never SQL."""

    def __init__(
        self,
        primary: Pool,
        registry: Registry,
        settings: Settings,
        metrics: Metrics | None = None,
        replicas: ReplicaSet | None = None,
    ) -> None:
        self.primary = primary
        self.replicas = replicas if replicas is not None else ReplicaSet([], max_lag=settings.replica_max_lag)
        self._sampler: asyncio.Task[None] | None = None
        self.registry = registry
        self.settings = settings
        self.metrics = metrics
        self.collector = PoolCollector(self.pools)

    def pools(self) -> list[Pool]:
        """The primary's pool and every replica's, for the metrics."""
        return [self.primary, *(r.pool for r in self.replicas.replicas)]

    @classmethod
    async def connect(
        cls, settings: Settings, registry: Registry, metrics: Metrics | None = None
    ) -> Database:
        """Open the pools; if the database is down, start empty and connect on first use."""
        if settings.database_url is None:
            raise ValueError("settings.database_url is required to open the pool")
        # Replica pools start empty (asyncpg connects nothing at min_size 0): a replica that is down at
        # start-up is only out of rotation. The first sample below opens a connection to each.
        replicas = ReplicaSet(
            [
                Replica(
                    url, await Pool.open("replica", settings, registry=registry, metrics=metrics, url=url)
                )
                for url in settings.replicas
            ],
            max_lag=settings.replica_max_lag,
        )
        primary = await Pool.open(
            "primary", settings, registry=registry, metrics=metrics, min_size=settings.pool_min_size
        )
        db = cls(primary, registry, settings, metrics, replicas)
        if replicas:
            # One round before serving, so reads start on the replicas that are fit for them.
            await replicas.sample(db.primary, db._sample)
            db._sampler = asyncio.create_task(replicas.run(db.primary, db._sample))
        return db

    async def _sample(self, pool: Pool, name: str) -> Any:
        """Run one lag-tracking statement on exactly this server (`datasvc.replicas`), never retried."""
        async with self.connection(pool) as conn:
            return await execute(conn, self.registry[name], (), self.metrics, pool.kind)

    async def close(self) -> None:
        """Close every pool, each within the shutdown bound."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
        for pool in self.pools():
            await pool.close()

    @asynccontextmanager
    async def connection(self, pool: Pool | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A connection of ``pool`` (default the primary's) for the request's caller, given back after."""
        pool = pool or self.primary
        conn = await pool.acquire(request_caller.get())
        error: BaseException | None = None
        try:
            yield conn
        except BaseException as exc:
            error = exc
            raise
        finally:
            await pool.release(conn, error)

    async def run(self, name: str, *args: Any) -> Any:
        """Run statement ``name`` on a pooled connection, outside any transaction; the result its kind says.

        ``:one`` gives a record or None, ``:many`` a list of records, ``:value`` one value, ``:exec`` the
        status. A rolled-back statement (40001, 40P01, 0A000) is retried a bounded number of times. After
        a lost connection a statement declared ``-- retry: safe`` is retried once on a fresh connection; any
        other is not: it may have reached the server (asyncpg's InternalClientError, too, can come after
        the statement was sent).

        A statement declared ``-- route: replica`` runs on a replica in rotation that has replayed the
        request's consistency token, if any; when none has, or the replica fails it, on the primary.
        """
        stmt = self.registry[name]
        if stmt.route is Route.REPLICA and self.replicas:
            min_lsn = request_min_lsn.get()
            replica = self.replicas.choose(min_lsn)
            # Not for a token we did not issue (UNREACHABLE): no replica has that, only the primary.
            ask = replica is None and min_lsn is not None and min_lsn < UNREACHABLE
            if ask:  # no sample has seen a replica pass the token yet: ask one how far it is now
                replica = self.replicas.choose()
            if replica is not None:
                try:
                    async with self.connection(replica.pool) as conn:
                        if not ask or await self._has_replayed(conn, replica, min_lsn or 0):
                            return await execute(conn, stmt, args, self.metrics, replica.pool.kind)
                except REPLICA_UNUSABLE as exc:
                    if isinstance(exc, pg.QueryCanceledError):
                        raise  # the statement ran out of time: it would on the primary too
                    replica.take_out(f"a read failed there ({type(exc).__name__})")
                    log.info("replica failed a read; running it on the primary", extra=_why(stmt.name, exc))
        return await self._run_on_primary(stmt, args)

    async def _has_replayed(self, conn: asyncpg.Connection, replica: Replica, lsn: int) -> bool:
        """Whether ``replica`` (``conn`` one of its connections) is still a standby and has replayed ``lsn``.

        A token is read back moments after its write, when the last sample (every `replicas.PERIOD`) is
        almost always older than it: without asking, nearly every read that carries a token went to the
        primary (docs/scaling.md). One round trip on the replica instead; what it says is also a fresher
        sample of the replica's position for the reads that follow.
        """
        state = await execute(conn, self.registry["replica.replay_state"], (), self.metrics, "replica")
        if not state["in_recovery"] or state["replay_lsn"] is None:
            return False  # promoted (or not a standby at all): the sampler takes it out of rotation
        replica.saw_replay(state["replay_lsn"])
        return bool(state["replay_lsn"] >= lsn)

    async def _run_on_primary(self, stmt: Statement, args: tuple[Any, ...]) -> Any:
        reconnected = False
        attempt = 0
        pool = self.primary
        while True:
            try:
                # `connection()` spelled out: an async context manager costs a generator per request.
                conn = await pool.acquire(request_caller.get())
                error: BaseException | None = None
                try:
                    return await execute(conn, stmt, args, self.metrics)
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    await pool.release(conn, error)
            except (*ROLLED_BACK, *READ_ONLY) as exc:
                # A read-only refusal (25006) did nothing either; the pool is expired by now, so the next
                # connection is opened anew and finds the new primary of a multi-host DATABASE_URL.
                attempt += 1
                if attempt > self.settings.transaction_retries:
                    raise
                await self._pause_before_retry(stmt.name, exc, attempt)
            except CONNECTION_LOST as exc:
                if reconnected or stmt.retry is not Retry.SAFE:
                    raise
                reconnected = True
                log.info("connection lost; retrying once", extra=_why(stmt.name, exc))

    async def transaction(
        self,
        work: Callable[[Transaction], Awaitable[T]],
        *,
        isolation: str = "read_committed",
        readonly: bool = False,
    ) -> T:
        """Run ``work(tx)`` in one transaction; start it over when PostgreSQL rolls it back (40001, 40P01).

        Commits when ``work`` returns, rolls back when it raises. ``work`` may run more than once, so it
        must do nothing outside the database it cannot repeat. After ``transaction_retries`` retries the
        error propagates (503 with ``Retry-After``). A lost connection is never retried here: the
        transaction may have committed.
        """
        attempt = 0
        while True:
            try:
                async with (
                    self.connection() as conn,
                    conn.transaction(isolation=isolation, readonly=readonly),
                ):
                    return await work(Transaction(self, conn))
            except (*ROLLED_BACK, *READ_ONLY) as exc:
                attempt += 1
                if attempt > self.settings.transaction_retries:
                    raise
                await self._pause_before_retry("transaction", exc, attempt)

    async def _pause_before_retry(self, what: str, exc: BaseException, attempt: int) -> None:
        log.info("rolled back by the database; retrying", extra={**_why(what, exc), "attempt": attempt})
        # Full jitter: two transactions that collided once should not collide again in lockstep.
        await asyncio.sleep(random.uniform(0, 0.01 * 2**attempt))  # noqa: S311 - not cryptographic


class Transaction:
    """One open transaction of `Database.transaction`: its statements run by name on its connection."""

    __slots__ = ("_db", "conn")

    def __init__(self, db: Database, conn: asyncpg.Connection) -> None:
        self._db = db
        self.conn = conn

    async def run(self, name: str, *args: Any) -> Any:
        """Run statement ``name`` inside this transaction (never retried on its own: the whole is)."""
        return await execute(self.conn, self._db.registry[name], args, self._db.metrics)


def _why(what: str, exc: BaseException) -> dict[str, Any]:
    return {"statement": what, "error": type(exc).__name__, "sqlstate": getattr(exc, "sqlstate", None)}
