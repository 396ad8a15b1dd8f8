"""The connection pool and the one way to run a registry statement: which connection, and how often.

`Database` lives in the Starlette lifespan state, never in a module global. Every acquire is bounded by
``acquire_timeout``. Sending the statement is `datasvc.statements.execute`: by its registry name's tagged
text, so asyncpg's prepared statement cache re-uses one server-side plan per statement and connection,
with its time added to the request's `Timing`, which the access log and ``Server-Timing`` report.

Retries are narrow on purpose:

- a statement or transaction that PostgreSQL rolled back (40001 serialization failure, 40P01 deadlock,
  0A000 stale cached plan) did nothing, so it is run again, at most ``transaction_retries`` times, with
  a short jittered pause;
- a statement whose SQL header declares ``-- retry: safe`` (reviewed with the SQL: reads) whose
  connection died under it is run once more on a fresh connection: reading twice is harmless;
- a write whose connection died is never retried: it may have committed, and only the caller can tell.

A connection that died is terminated and the whole pool expired (its siblings probably died too), so the
pool heals without serving another request a dead connection. docs/reliability.md has the measurements.
So is one whose server refused a write as read-only (25006): after a failover the old connections may
still reach the demoted server, and asyncpg checks ``target_session_attrs`` only when it connects; the
refused statement did nothing, so it is run once more on a fresh connection, which finds the new primary.

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
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import asyncpg
from asyncpg import exceptions as pg

from datasvc.connections import create_pool
from datasvc.consistency import UNREACHABLE
from datasvc.context import request_caller, request_min_lsn, request_timing
from datasvc.errors import DatabaseUnavailable, PoolTimeout, connect_refused
from datasvc.registry import Registry, Retry, Route, Statement
from datasvc.replicas import Replica, ReplicaSet, Target
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

# The connection died (backend terminated, server crashed or restarting, socket reset). Not
# QueryCanceledError: a statement that ran out of time would only run out of time again.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    pg.PostgresConnectionError,
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    pg.CannotConnectNowError,
    ConnectionError,
    # A backend that sent FATAL while its connection sat idle in the pool leaves asyncpg's protocol stuck
    # ("cannot switch to state 12; another operation (2) is in progress", MagicStack/asyncpg#1069).
    asyncpg.InternalClientError,
)

# The server refused a write as read-only: the connection reaches a standby (a demoted primary after a
# failover). The statement did nothing; the pool's connections to that server are of no use for writes.
READ_ONLY: tuple[type[BaseException], ...] = (pg.ReadOnlySQLTransactionError,)

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
    """A pool plus the registry: handlers ask for statements by name, never by SQL text."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: Registry,
        settings: Settings,
        metrics: Metrics | None = None,
        replicas: ReplicaSet | None = None,
    ) -> None:
        self.primary = Target("primary", pool, settings.pool_max_size)
        self.replicas = replicas if replicas is not None else ReplicaSet([], max_lag=settings.replica_max_lag)
        self._refill: asyncio.Task[None] | None = None
        self._sampler: asyncio.Task[None] | None = None
        self.registry = registry
        self.settings = settings
        self.metrics = metrics

    @property
    def pool(self) -> asyncpg.Pool:
        """The primary's pool."""
        return self.primary.pool

    @property
    def waiting(self) -> int:
        """Requests waiting for a connection of the primary's pool right now."""
        return self.primary.waiting

    def targets(self) -> list[Target]:
        """The primary and every replica, for the pool metrics."""
        return [self.primary, *self.replicas.replicas]

    @classmethod
    async def connect(
        cls, settings: Settings, registry: Registry, metrics: Metrics | None = None
    ) -> Database:
        """Open the pool; if the database is down, start empty and connect on first use."""
        if settings.database_url is None:
            raise ValueError("settings.database_url is required to open the pool")
        # Replica pools start empty (asyncpg connects nothing at min_size 0): a replica that is down at
        # start-up is only out of rotation. The first sample below opens a connection to each.
        replicas = ReplicaSet(
            [
                Replica(url, await create_pool(settings, min_size=0, url=url), settings.pool_max_size)
                for url in settings.replicas
            ],
            max_lag=settings.replica_max_lag,
        )
        try:
            pool = await create_pool(settings, min_size=settings.pool_min_size)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning(
                "database unreachable at start-up; serving 503 until it answers",
                extra={"error": type(exc).__name__},
            )
            pool = await create_pool(settings, min_size=0)
            db = cls(pool, registry, settings, metrics, replicas)
            if settings.pool_min_size > 0:
                db._refill = asyncio.create_task(db._restore_floor())
        else:
            db = cls(pool, registry, settings, metrics, replicas)
        if replicas:
            # One round before serving, so reads start on the replicas that are fit for them.
            await replicas.sample(db.primary, db._sample)
            db._sampler = asyncio.create_task(replicas.run(db.primary, db._sample))
        return db

    async def _sample(self, target: Target, name: str) -> Any:
        """Run one lag-tracking statement on exactly this server (`datasvc.replicas`), never retried."""
        async with self.connection(target) as conn:
            return await execute(conn, self.registry[name], (), self.metrics, target.kind)

    async def _restore_floor(self) -> None:
        """After a start with the database down: once it answers, swap in a pool with its warm floor.

        asyncpg cannot raise a pool's min_size later, so a new pool replaces the empty one. Requests in
        flight release into the pool they acquired from (`connection` holds on to it), and the old pool
        closes once they have.
        """
        while True:
            await asyncio.sleep(1.0)
            try:
                pool = await create_pool(self.settings, min_size=self.settings.pool_min_size)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                continue
            old, self.primary.pool = self.primary.pool, pool
            self.primary.gate.expire()  # connections of the old pool go back to it, not to the next request
            log.info("database answers; pool floor restored", extra={"min_size": self.settings.pool_min_size})
            try:
                await old.close()
            except asyncio.CancelledError:  # shutting down meanwhile: do not leave its sockets open
                old.terminate()
                raise
            return

    async def close(self) -> None:
        """Close gracefully within the shutdown bound, then terminate whatever is left."""
        for task in (self._refill, self._sampler):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for target in self.targets():
            try:
                await target.gate.drain()  # the pool's close waits for the connections parked there
                await asyncio.wait_for(target.pool.close(), timeout=self.settings.shutdown_timeout)
            except TimeoutError:
                log.warning("pool did not close in time; terminating", extra={"target": target.kind})
                target.pool.terminate()

    @asynccontextmanager
    async def connection(self, target: Target | None = None) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection of ``target`` (default the primary), waited for at most ``acquire_timeout``."""
        target = target or self.primary
        name = self._caller_name()
        pool, conn = await self._acquire(target, name)
        try:
            await self._name_caller(conn, name)
            yield conn
        except (*CONNECTION_LOST, *READ_ONLY):
            await _lost(target, pool, conn)
            raise
        except TimeoutError:
            _stalled(conn)
            raise
        finally:
            await self._release(target, pool, conn)

    async def _acquire(self, target: Target, name: str) -> tuple[asyncpg.Pool, asyncpg.Connection]:
        """A connection of ``target`` within ``acquire_timeout``, or `PoolTimeout`.

        Requests wait at ``target.gate`` in arrival order (`datasvc.gate`: asyncpg's own queue lets
        newcomers overtake); ``name``, the ``application_name`` the request runs under, lets the gate
        hand a released connection to a waiter of the same caller.

        The bound is one timer cancelling this task, rather than ``pool.acquire(timeout=…)``: asyncpg
        wraps that in ``asyncio.timeout``, whose Python code cost ~4% of a lookup's instructions
        (callgrind, docs/benchmarks.md) to bound a wait that almost never happens (an idle connection is
        taken without suspending). A cancellation that is not our timer's propagates as it came.
        """
        started = time.perf_counter()
        target.waiting += 1
        task = asyncio.current_task()
        assert task is not None
        expiry = _Expiry(task)
        timer = asyncio.get_running_loop().call_later(self.settings.acquire_timeout, expiry.fire)
        gate = target.gate
        try:
            handed = await gate.enter(name)
            if handed is not None:
                return handed  # the connection the previous request used, handed straight over
            try:
                # Captured once: if `_restore_floor` swaps pools meanwhile, the connection goes back to
                # its own.
                pool = target.pool
                conn = await pool.acquire()
            except BaseException:
                gate.leave()
                raise
            gate.taken(conn)
            return pool, conn
        except asyncio.CancelledError:
            if expiry.fired and task.uncancel() <= expiry.cancelling:
                raise PoolTimeout(self.settings.acquire_timeout) from None
            raise
        except CONNECTION_LOST:
            raise
        except asyncpg.PostgresError as exc:
            # The server refused a new connection (no such database, bad password, no CONNECT privilege…):
            # an outage whatever the SQLSTATE, where the same code from a statement could be a bug.
            raise connect_refused(exc) from exc
        finally:
            timer.cancel()
            target.waiting -= 1
            waited = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.observe_acquire(waited, target.kind)
            timing = request_timing.get()
            if timing is not None and timing.trace is not None:
                timing.trace.waited(waited, target.kind)

    async def _release(self, target: Target, pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
        try:
            # To the next waiter, or back to the pool. Bounded, as asyncpg bounds it after
            # ``acquire(timeout=…)``: a transaction left open rolls back.
            await target.gate.release(pool, conn, self.settings.acquire_timeout)
        except Exception as exc:
            # The pool's reset query failed (backend killed, network gone) and asyncpg has already
            # terminated the connection; the request's own work is finished, so it must not fail for this.
            log.info("connection dropped on release", extra={"error": type(exc).__name__})

    def _caller_name(self) -> str:
        """``<application_name>:<caller>`` for an authenticated request, else the plain name."""
        caller = request_caller.get()
        if caller is None:
            return self.settings.application_name
        return f"{self.settings.application_name}:{caller}"[:63]  # NAMEDATALEN - 1

    async def _name_caller(self, conn: asyncpg.Connection, name: str) -> None:
        """Name the connection for the request's caller (``name``), for auditing (pg_stat_activity, logs).

        The server reports every change of ``application_name``, so comparing costs nothing. Connections
        keep their session on release (`datasvc.connections`), so a round trip is paid only when the caller
        differs from the connection's previous one (the gate prefers handing a connection to its previous
        caller); a request without a caller restores the plain name.
        """
        if conn.get_settings().application_name != name:
            await execute(conn, self.registry["session.set_application_name"], (name,))

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
                    async with self.connection(replica) as conn:
                        if not ask or await self._has_replayed(conn, replica, min_lsn or 0):
                            return await execute(conn, stmt, args, self.metrics, replica.kind)
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
        primary (2 to 5 of 100 on the replica, docs/scaling.md). One round trip on the replica instead; what
        it says is also a fresher sample of the replica's position for the reads that follow.
        """
        state = await execute(conn, self.registry["replica.replay_state"], (), self.metrics, replica.kind)
        if not state["in_recovery"] or state["replay_lsn"] is None:
            return False  # promoted (or not a standby at all): the sampler takes it out of rotation
        replica.saw_replay(state["replay_lsn"])
        return bool(state["replay_lsn"] >= lsn)

    async def _run_on_primary(self, stmt: Statement, args: tuple[Any, ...]) -> Any:
        reconnected = False
        attempt = 0
        while True:
            try:
                # `connection()` spelled out: an async context manager costs a generator per request.
                name = self._caller_name()
                pool, conn = await self._acquire(self.primary, name)
                try:
                    await self._name_caller(conn, name)
                    return await execute(conn, stmt, args, self.metrics)
                except (*CONNECTION_LOST, *READ_ONLY):
                    await _lost(self.primary, pool, conn)
                    raise
                except TimeoutError:
                    _stalled(conn)
                    raise
                finally:
                    await self._release(self.primary, pool, conn)
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


class _Expiry:
    """The acquire timer: cancels the waiting task, and remembers it did (see `Database._acquire`)."""

    __slots__ = ("cancelling", "fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()


async def _lost(target: Target, pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    # Never hand a connection in an unknown protocol state to the next request: close it. Its
    # siblings most likely died with it (restart, failover, mass kill) but may not know yet, so
    # expire them all: each is replaced on its next acquire, and a retry lands on a fresh one.
    with contextlib.suppress(asyncpg.InterfaceError):  # asyncpg may have detached it already
        conn.terminate()
    target.gate.expire()  # nor hand a sibling from before straight to the next request
    await pool.expire_connections()


def _stalled(conn: asyncpg.Connection) -> None:
    # Only a silent network makes the client-side command timeout fire before the server's
    # statement_timeout: close the connection now rather than wait on its reset when releasing.
    with contextlib.suppress(asyncpg.InterfaceError):
        conn.terminate()


def _why(what: str, exc: BaseException) -> dict[str, Any]:
    return {"statement": what, "error": type(exc).__name__, "sqlstate": getattr(exc, "sqlstate", None)}
