"""One server's connections, and the only module that touches asyncpg's pool: acquire, release, expire, close.

asyncpg's pool is not fair: a connection released wakes the first waiting request, but a request arriving
before that one runs takes it, and the woken one queues again at the back; the tail then waits several
rounds. So at most ``size`` requests hold a place at a `Pool`; the others queue (`datasvc.waitlist`: in
arrival order, the same caller first, a share per caller), and:

- **hand-over**: a request done with a connection passes it straight to the next waiter, so nobody takes
  it in between, and asyncpg's release and acquire (a task and a turn of the loop each way) are skipped
  while requests queue;
- **parking** (`datasvc.parking`): with nobody waiting, a connection fit to pass on waits for the next
  request, again without asyncpg's release and acquire; after a short while it goes back to asyncpg's
  pool, whose idle timeout and close then see it;
- **named per caller**: a connection carries its caller in ``application_name`` (set on acquire, for
  pg_stat_activity), so a connection handed over goes to a waiter of its caller where one is near the head.

docs/benchmarks.md ("Connections have one owner") has the measurements behind keeping each of these.

A connection is fit to pass on while it is open, outside a transaction, taken from the pool since its last
`expire`, and has served fewer than `MAX_USES` requests in a row; otherwise it goes back to asyncpg's
pool, which rolls back what was left open and recycles it. `release` is the one place that decides what
becomes of a connection, and it never raises. `close` is bounded; a closed pool refuses acquires.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

import asyncpg

from datasvc.connections import create_pool, reusable, session_name
from datasvc.context import request_timing
from datasvc.dberrors import CONNECT_FAILED, CONNECTION_LOST, READ_ONLY, connect_refused
from datasvc.errors import PoolTimeout, ShuttingDown
from datasvc.parking import Parking
from datasvc.poolstats import Stats
from datasvc.statements import execute
from datasvc.waitlist import Waitlist

if TYPE_CHECKING:
    from datasvc.metrics import Metrics
    from datasvc.registry import Registry
    from datasvc.settings import Settings

log = logging.getLogger("datasvc.pool")

# Requests in a row a connection serves (handed over or parked) before it goes back through asyncpg's
# pool, which recycles it after ``max_queries``; under constant load it would otherwise never return there.
MAX_USES = 1000

_UNUSABLE = (*CONNECTION_LOST, *READ_ONLY)


class _Lease:
    """A connection out of asyncpg's pool: where it goes back, since when, how often used, by whom.

    ``name``: the connection's ``application_name``, as the server last reported it when it left
    asyncpg's pool and as set here since (only `Pool.acquire` changes it), so that matching a connection
    to a caller asks nothing of the connection.
    """

    __slots__ = ("caller", "epoch", "name", "pool", "uses")

    def __init__(self, pool: asyncpg.Pool, epoch: int, caller: str | None, name: str | None) -> None:
        self.pool = pool
        self.epoch = epoch
        self.uses = 0
        self.caller = caller
        self.name = name


class Pool:
    """The connections of one server (``kind``: primary or replica), ``size`` of them at most."""

    def __init__(
        self,
        kind: str,
        pool: asyncpg.Pool,
        settings: Settings,
        *,
        registry: Registry,
        metrics: Metrics | None = None,
    ) -> None:
        self.kind = kind
        self.size = settings.pool_max_size
        self.waitlist = Waitlist(self.size)
        self.waiting = 0  # requests in `acquire` now
        self._pool = pool
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._lent: dict[int, _Lease] = {}  # id(connection) -> its lease, for every connection out
        self.parking = Parking(self._to_pool)
        self._epoch = 0  # `expire` bumps it: connections taken before are not passed on any more
        self._background: set[asyncio.Task[Any]] = set()  # connections on their way back to the pool
        self._refill: asyncio.Task[None] | None = None
        self._closed = False

    @classmethod
    async def open(
        cls,
        kind: str,
        settings: Settings,
        *,
        registry: Registry,
        metrics: Metrics | None = None,
        url: str | None = None,
        min_size: int = 0,
    ) -> Pool:
        """A pool to ``url`` (default DATABASE_URL); with the server down, empty until it answers."""
        try:
            raw = await create_pool(settings, min_size=min_size, url=url)
        except CONNECT_FAILED as exc:
            if not min_size:
                raise
            log.warning(
                "database unreachable at start-up; serving 503 until it answers",
                extra={"error": type(exc).__name__},
            )
            raw = await create_pool(settings, min_size=0, url=url)
            pool = cls(kind, raw, settings, registry=registry, metrics=metrics)
            pool._refill = asyncio.create_task(pool._restore_floor(min_size, url))
            return pool
        return cls(kind, raw, settings, registry=registry, metrics=metrics)

    @property
    def free(self) -> int:
        """Places not held by a request (a parked connection's place is free)."""
        return self.waitlist.free

    @property
    def parked(self) -> int:
        """Idle connections kept here for the next request rather than in asyncpg's pool."""
        return len(self.parking)

    def stats(self) -> Stats:
        pool = self._pool
        idle = pool.get_idle_size() + self.parked
        return Stats(pool.get_size(), idle, pool.get_max_size(), self.waiting)

    def caller_name(self, caller: str | None) -> str:
        """``<application_name>:<caller>`` for an authenticated request, else the plain name."""
        if caller is None:
            return self._settings.application_name
        return f"{self._settings.application_name}:{caller}"[:63]  # NAMEDATALEN - 1

    async def acquire(self, caller: str | None = None) -> asyncpg.Connection:
        """A connection named for ``caller`` within ``acquire_timeout``; `PoolTimeout`, or `ShuttingDown`
        once closed. Give it back with `release`, whatever happens.

        Most acquires find a place free and a parked connection fit to serve: that path awaits nothing,
        so it sets no timer (`_wait` bounds every path that awaits).
        """
        if self._closed:
            raise ShuttingDown("the connection pool is closed: the service is stopping")
        name = self.caller_name(caller)
        entered = self.waitlist.enter(caller)
        conn = self._unpark(name, caller) if entered else None
        if conn is None:
            conn = await self._wait(name, caller, entered)
        else:
            self._waited(0.0)
        lease = self._lent[id(conn)]
        if lease.name != name:
            # The round trip is paid only when the caller differs from the connection's previous one.
            try:
                await execute(conn, self._registry["session.set_application_name"], (name,))
            except BaseException as exc:
                await self.release(conn, exc)
                raise
            lease.name = name
        return conn

    async def _wait(self, name: str, caller: str | None, entered: bool) -> asyncpg.Connection:
        """For a place (unless ``entered`` holds one already), then a connection, within the timeout.

        The bound is one timer cancelling this task rather than ``asyncio.timeout``, whose Python code
        costs more than the wait it bounds, which almost never happens. A cancellation that is not our
        timer's propagates as it came.
        """
        started = time.perf_counter()
        self.waiting += 1
        task = asyncio.current_task()
        assert task is not None
        expiry = _Expiry(task)
        timer = asyncio.get_running_loop().call_later(self._settings.acquire_timeout, expiry.fire)
        try:
            conn = None if entered else await self._enter(name, caller)
            if conn is None:
                conn = await self._from_pool(caller)
        except asyncio.CancelledError:
            if expiry.fired and task.uncancel() <= expiry.cancelling:
                raise PoolTimeout(self._settings.acquire_timeout) from None
            raise
        except CONNECTION_LOST:
            raise
        except asyncpg.PostgresError as exc:
            # The server refused a new connection (no such database, bad password, no CONNECT privilege…):
            # an outage whatever the SQLSTATE, where the same code from a statement could be a bug.
            raise connect_refused(exc) from exc
        finally:
            timer.cancel()
            self.waiting -= 1
            self._waited(time.perf_counter() - started)
        return conn

    def _waited(self, seconds: float) -> None:
        """An acquire's wait, to the metrics and to the request's trace."""
        if self._metrics is not None:
            self._metrics.observe_acquire(seconds, self.kind)
        timing = request_timing.get()
        if timing is not None and timing.trace is not None:
            timing.trace.waited(seconds, self.kind)

    async def release(self, conn: asyncpg.Connection, error: BaseException | None = None) -> None:
        """Done with ``conn``, after ``error`` if the work on it raised one; never raises.

        A connection lost (or on a server that refused a write as read-only) is closed and its siblings
        expired: they probably died with it (restart, failover) but may not know yet, so each is replaced
        on its next acquire and a retry lands on a fresh one. One whose client-side command timeout fired
        (only a silent network makes it fire before the server's statement_timeout) is closed rather than
        reset. Otherwise it goes to the next waiter, is parked, or goes back to asyncpg's pool.
        """
        lease = self._lent[id(conn)]
        if error is not None and isinstance(error, (*_UNUSABLE, TimeoutError)):
            with contextlib.suppress(asyncpg.InterfaceError):  # asyncpg may have detached it already
                conn.terminate()
            if isinstance(error, _UNUSABLE):
                await self.expire()
        self.waitlist.unhold(lease.caller)
        if self._pass_on(conn, lease):
            return
        del self._lent[id(conn)]
        # The place first: the waiter it wakes asks the pool for a connection when the loop next runs it,
        # and gets this one, put back by then.
        self._give_place()
        try:
            # Bounded as asyncpg bounds it after ``acquire(timeout=…)``: a transaction left open rolls back.
            await lease.pool.release(conn, timeout=self._settings.acquire_timeout)
        except Exception as exc:
            # The reset failed (backend killed, network gone) and asyncpg has terminated the connection;
            # the request's own work is finished, so it must not fail for this.
            log.info("connection dropped on release", extra={"error": type(exc).__name__})

    async def expire(self) -> None:
        """Replace every connection: none taken before now is passed on; each is reopened on next use."""
        self._epoch += 1
        self.parking.empty()
        await self._pool.expire_connections()

    async def close(self) -> None:
        """Refuse new acquires, then close within ``DATASVC_SHUTDOWN_TIMEOUT``; terminate what is left."""
        self._closed = True
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        for waiter in self.waitlist.clear():
            if not waiter.future.done():
                waiter.future.set_exception(ShuttingDown("the connection pool closed while this waited"))
        self.parking.close()
        try:
            await asyncio.wait_for(self._close(), timeout=self._settings.shutdown_timeout)
        except TimeoutError:
            log.warning("pool did not close in time; terminating", extra={"target": self.kind})
            self._pool.terminate()

    async def _close(self) -> None:
        await asyncio.gather(*self._background)  # asyncpg's close waits for what is out: give it back first
        await self._pool.close()

    # ------------------------------------------------------------------------------------------ places
    async def _enter(self, name: str, caller: str | None) -> asyncpg.Connection | None:
        """Queue for a place: a connection handed over or parked, or None (take one from the pool)."""
        waiter = self.waitlist.join(name, caller)
        if self.waitlist.free > 0:  # only waiters over their caller's share are queued: this one may pass
            self._grant()
        try:
            conn: asyncpg.Connection | None = await waiter.future
        except asyncio.CancelledError:
            if waiter.future.cancelled():  # nothing was handed to it
                self.waitlist.leave(waiter)
            elif (handed := waiter.future.result()) is None:
                self.waitlist.unhold(caller)  # a place granted as the task was cancelled: pass it on
                self._give_place()
            else:
                self.waitlist.unhold(caller)
                lease = self._lent[id(handed)]
                if not self._pass_on(handed, lease):
                    del self._lent[id(handed)]
                    self._give_place()
                    self._spawn(_give_back(lease.pool, handed))
            raise
        return conn

    async def _from_pool(self, caller: str | None) -> asyncpg.Connection:
        pool = self._pool  # captured: if `_restore_floor` swaps pools meanwhile, it goes back to its own
        try:
            conn = await pool.acquire()
        except BaseException:
            self.waitlist.unhold(caller)
            self._give_place()
            raise
        self._lent[id(conn)] = _Lease(pool, self._epoch, caller, session_name(conn))
        return conn

    def _give_place(self) -> None:
        """A place back without a connection: to the next waiter that may take it, else free."""
        self.waitlist.free += 1
        self._grant()

    def _grant(self) -> None:
        for waiter in self.waitlist.granted():
            waiter.future.set_result(self._unpark(waiter.name, waiter.caller))

    # ------------------------------------------------------------------------- hand-over and parking
    def _pass_on(self, conn: asyncpg.Connection, lease: _Lease) -> bool:
        """Hand ``conn`` to a waiter, or park it, if it is fit; False: it goes back to the pool."""
        if not self._fit(conn, lease):
            return False
        lease.uses += 1
        waitlist = self.waitlist
        waiter = waitlist.take(lease.name) if waitlist.queued else None
        if waiter is not None:
            waitlist.hold(waiter.caller)
            lease.caller = waiter.caller
            waiter.future.set_result(conn)
            return True
        self.parking.park(conn, lease.name)
        waitlist.free += 1  # nobody waits who may take it: the place is free, its connection parked
        return True

    def _fit(self, conn: asyncpg.Connection, lease: _Lease) -> bool:
        return lease.epoch == self._epoch and lease.uses < MAX_USES and reusable(conn) and not self._closed

    def _unpark(self, name: str, caller: str | None) -> asyncpg.Connection | None:
        """A parked connection still fit to serve, preferably last named ``name``; or None."""
        conn = self.parking.take(name)
        while conn is not None:
            lease = self._lent[id(conn)]
            if self._fit(conn, lease):
                lease.caller = caller
                return conn
            self._to_pool(conn)
            conn = self.parking.take(None)
        return None

    def _to_pool(self, conn: asyncpg.Connection) -> None:
        """A connection leaving the parking back to the pool it came from (its place is already free)."""
        lease = self._lent.pop(id(conn))
        self._spawn(_give_back(lease.pool, conn))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _restore_floor(self, min_size: int, url: str | None) -> None:
        """After a start with the server down: once it answers, swap in a pool with its warm floor.

        asyncpg cannot raise a pool's min_size later, so a new pool replaces the empty one. Connections
        out release into the pool they came from (their lease says which); the old pool closes once they
        have.
        """
        while True:
            await asyncio.sleep(1.0)
            try:
                fresh = await create_pool(self._settings, min_size=min_size, url=url)
            except CONNECT_FAILED:
                continue
            old, self._pool = self._pool, fresh
            self._epoch += 1  # connections of the old pool go back to it, not to the next request
            self.parking.empty()
            log.info("database answers; pool floor restored", extra={"min_size": min_size})
            try:
                await old.close()
            except asyncio.CancelledError:  # closing meanwhile: do not leave its sockets open
                old.terminate()
                raise
            return


class _Expiry:
    """The acquire timer: cancels the waiting task, and remembers it did (see `Pool.acquire`)."""

    __slots__ = ("cancelling", "fired", "task")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.cancelling = task.cancelling()
        self.fired = False

    def fire(self) -> None:
        self.fired = True
        self.task.cancel()


async def _give_back(pool: asyncpg.Pool, conn: asyncpg.Connection) -> None:
    with contextlib.suppress(Exception):  # asyncpg terminates a connection it cannot reset
        await pool.release(conn)
