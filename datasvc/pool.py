"""One server's connections, and the only module that touches asyncpg's pool: acquire, release, expire, close.

asyncpg's pool is not fair: a connection released wakes the first waiting request, but a request arriving
before that one runs takes it, and the woken one queues again at the back; the tail then waits several
rounds. So at most ``size`` requests hold a place at a `Pool`; the others queue in arrival order, and:

- **hand-over**: a request done with a connection passes it straight to the next waiter, so nobody takes
  it in between, and asyncpg's release and acquire (a task and a turn of the loop each way) are skipped
  while requests queue;
- **parking**: with nobody waiting, a connection fit to pass on waits here for the next request, again
  without asyncpg's release and acquire; one parked `PARK_SECONDS` goes back to asyncpg's pool, whose idle
  timeout and close then see it;
- **same caller first**: a connection carries its last caller in ``application_name`` (set on acquire,
  for pg_stat_activity), and renaming it costs a round trip, so a connection goes to the first of the next
  `LOOK_AHEAD` waiters of its caller; the head of the queue is passed over at most `MAX_PASSED` times;
- **a share per caller**: an authenticated caller holds at most all connections but `RESERVE`, so one
  caller flooding slow statements leaves a connection for the others' cheap ones; the in-flight share
  (`datasvc.limits`) counts requests, this one counts connections held.

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
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from asyncpg import exceptions as pg
from prometheus_client.core import GaugeMetricFamily, Metric

from datasvc.connections import create_pool
from datasvc.context import request_timing
from datasvc.errors import PoolTimeout, ShuttingDown, connect_refused
from datasvc.statements import execute

if TYPE_CHECKING:
    from datasvc.metrics import Metrics
    from datasvc.registry import Registry
    from datasvc.settings import Settings

log = logging.getLogger("datasvc.pool")

LOOK_AHEAD = 8  # waiters searched for the released connection's caller
MAX_PASSED = 4  # times a waiter can be overtaken by a later one of the connection's caller
# Requests in a row a connection serves (handed over or parked) before it goes back through asyncpg's
# pool, which recycles it after ``max_queries``; under constant load it would otherwise never return there.
MAX_USES = 1000
# How long a connection stays parked: under load it is taken again within milliseconds; an idle one
# belongs to asyncpg's pool, whose idle timeout and metrics see it.
PARK_SECONDS = 1.0
RESERVE = 1  # connections one authenticated caller always leaves to the others

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
_UNUSABLE = (*CONNECTION_LOST, *READ_ONLY)
# What opening a connection raises when the server is down or refuses: the pool then starts empty.
CONNECT_FAILED: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


@dataclass(slots=True)
class Stats:
    """What the metrics report of one pool: open, idle, most and waiting connections."""

    size: int
    idle: int
    max: int
    waiting: int


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


class _Waiter:
    __slots__ = ("caller", "future", "name", "passed")

    def __init__(self, future: asyncio.Future[Any], name: str, caller: str | None) -> None:
        self.future = future  # its result: a connection handed over, or None (take one from the pool)
        self.name = name  # the application_name its request runs under
        self.caller = caller
        self.passed = 0


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
        self.free = self.size  # places not held by a request (a parked connection's place is free)
        self.waiting = 0  # requests in `acquire` now
        self.per_caller = max(1, self.size - RESERVE)
        self._pool = pool
        self._settings = settings
        self._registry = registry
        self._metrics = metrics
        self._waiters: deque[_Waiter] = deque()
        self._held: dict[str, int] = {}  # connections held per authenticated caller
        self._lent: dict[int, _Lease] = {}  # id(connection) -> its lease, for every connection out
        self._parked: list[tuple[Any, float]] = []  # (connection, when), most recently parked last
        self._sweep: asyncio.TimerHandle | None = None
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
    def parked(self) -> int:
        """Idle connections kept here for the next request rather than in asyncpg's pool."""
        return len(self._parked)

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

        The bound is one timer cancelling this task rather than ``asyncio.timeout``, whose Python code
        costs more than the wait it bounds, which almost never happens. A cancellation that is not our
        timer's propagates as it came.
        """
        if self._closed:
            raise ShuttingDown("the connection pool is closed: the service is stopping")
        name = self.caller_name(caller)
        started = time.perf_counter()
        self.waiting += 1
        task = asyncio.current_task()
        assert task is not None
        expiry = _Expiry(task)
        timer = asyncio.get_running_loop().call_later(self._settings.acquire_timeout, expiry.fire)
        try:
            conn = await self._enter(name, caller)
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
            waited = time.perf_counter() - started
            if self._metrics is not None:
                self._metrics.observe_acquire(waited, self.kind)
            timing = request_timing.get()
            if timing is not None and timing.trace is not None:
                timing.trace.waited(waited, self.kind)
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
        self._unhold(lease.caller)
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
        self._unpark_all()
        await self._pool.expire_connections()

    async def close(self) -> None:
        """Refuse new acquires, then close within ``DATASVC_SHUTDOWN_TIMEOUT``; terminate what is left."""
        self._closed = True
        if self._refill is not None:
            self._refill.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refill
        for waiter in self._waiters:
            if not waiter.future.done():
                waiter.future.set_exception(ShuttingDown("the connection pool closed while this waited"))
        self._waiters.clear()
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._unpark_all()
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
        """Wait for a place: a connection handed over or parked, or None (take one from the pool)."""
        if self.free > 0 and not self._waiters and self._fits_share(caller):
            self.free -= 1
            self._hold(caller)
            return self._unpark(name, caller)
        waiter = _Waiter(asyncio.get_running_loop().create_future(), name, caller)
        self._waiters.append(waiter)
        if self.free > 0:  # only waiters over their caller's share are queued: this one may pass
            self._grant()
        try:
            conn: asyncpg.Connection | None = await waiter.future
        except asyncio.CancelledError:
            if waiter.future.cancelled():  # nothing was handed to it; `_take` may have dropped it already
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            elif (handed := waiter.future.result()) is None:
                self._unhold(caller)  # a place granted as the task was cancelled: pass it on
                self._give_place()
            else:
                self._unhold(caller)
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
            self._unhold(caller)
            self._give_place()
            raise
        self._lent[id(conn)] = _Lease(pool, self._epoch, caller, _name(conn))
        return conn

    def _give_place(self) -> None:
        """A place back without a connection: to the next waiter that may take it, else free."""
        self.free += 1
        self._grant()

    def _grant(self) -> None:
        while self.free > 0 and (waiter := self._take(None)) is not None:
            self.free -= 1
            self._hold(waiter.caller)
            waiter.future.set_result(self._unpark(waiter.name, waiter.caller))

    def _fits_share(self, caller: str | None) -> bool:
        return caller is None or self._held.get(caller, 0) < self.per_caller

    def _hold(self, caller: str | None) -> None:
        if caller is not None:
            self._held[caller] = self._held.get(caller, 0) + 1

    def _unhold(self, caller: str | None) -> None:
        if caller is not None:
            held = self._held[caller] - 1
            if held:
                self._held[caller] = held
            else:
                del self._held[caller]

    def _take(self, name: str | None) -> _Waiter | None:
        """The waiter to serve: the first within its share, or one of the next few named ``name``.

        A waiter whose task was cancelled (its acquire timed out) stays queued until that task runs and
        removes itself; its future is done by then, and it is skipped here.
        """
        waiters = self._waiters
        while waiters and waiters[0].future.done():
            waiters.popleft()
        head = chosen = -1
        for i, waiter in enumerate(waiters):
            if waiter.future.done() or not self._fits_share(waiter.caller):
                continue
            if head < 0:
                head = i
                if name is None or waiter.name == name or waiter.passed >= MAX_PASSED:
                    chosen = i
                    break
            elif waiter.name == name:
                chosen = i
                break
            if i - head >= LOOK_AHEAD:
                break
        if head < 0:
            return None
        if chosen < 0:
            chosen = head
        for j in range(head, chosen):
            waiters[j].passed += 1
        waiter = waiters[chosen]
        del waiters[chosen]
        return waiter

    # ------------------------------------------------------------------------- hand-over and parking
    def _pass_on(self, conn: asyncpg.Connection, lease: _Lease) -> bool:
        """Hand ``conn`` to a waiter, or park it, if it is fit; False: it goes back to the pool."""
        if not self._fit(conn, lease):
            return False
        lease.uses += 1
        waiter = self._take(lease.name) if self._waiters else None
        if waiter is not None:
            self._hold(waiter.caller)
            lease.caller = waiter.caller
            waiter.future.set_result(conn)
            return True
        self._parked.append((conn, asyncio.get_running_loop().time()))
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(PARK_SECONDS, self._sweep_parked)
        self.free += 1  # nobody waits who may take it: the place is free, its connection parked
        return True

    def _fit(self, conn: asyncpg.Connection, lease: _Lease) -> bool:
        return lease.epoch == self._epoch and lease.uses < MAX_USES and _open(conn) and not self._closed

    def _unpark(self, name: str, caller: str | None) -> asyncpg.Connection | None:
        """A parked connection still fit to serve, preferably last named ``name``; or None."""
        parked = self._parked
        lent = self._lent
        for i in range(len(parked) - 1, max(-1, len(parked) - 1 - LOOK_AHEAD), -1):
            if lent[id(parked[i][0])].name == name:
                conn = parked.pop(i)[0]
                break
        else:
            conn = parked.pop()[0] if parked else None
        while conn is not None:
            lease = self._lent[id(conn)]
            if self._fit(conn, lease):
                lease.caller = caller
                return conn
            self._to_pool(conn)
            conn = parked.pop()[0] if parked else None
        return None

    def _sweep_parked(self) -> None:
        """The connections parked `PARK_SECONDS` ago or more go back to the pool (they are the first)."""
        self._sweep = None
        now = asyncio.get_running_loop().time()
        stale = 0
        while stale < len(self._parked) and now - self._parked[stale][1] >= PARK_SECONDS:
            stale += 1
        for conn, _ in self._parked[:stale]:
            self._to_pool(conn)
        del self._parked[:stale]
        if self._parked:
            wait = self._parked[0][1] + PARK_SECONDS - now
            self._sweep = asyncio.get_running_loop().call_later(wait, self._sweep_parked)

    def _unpark_all(self) -> None:
        parked, self._parked = self._parked, []
        for conn, _ in parked:
            self._to_pool(conn)

    def _to_pool(self, conn: asyncpg.Connection) -> None:
        """A parked connection back to the pool it came from (its place is already free)."""
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
            self._unpark_all()
            log.info("database answers; pool floor restored", extra={"min_size": min_size})
            try:
                await old.close()
            except asyncio.CancelledError:  # closing meanwhile: do not leave its sockets open
                old.terminate()
                raise
            return


class PoolCollector:
    """The pools' size, idle, most and waiting connections by ``target`` kind, read when scraped."""

    def __init__(self, pools: Callable[[], Iterable[Pool]]) -> None:
        self.pools = pools

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        totals: dict[str, list[int]] = {}
        for pool in self.pools():
            s = pool.stats()
            for i, value in enumerate((s.size, s.idle, s.max, s.waiting)):
                totals.setdefault(pool.kind, [0, 0, 0, 0])[i] += value
        connections = GaugeMetricFamily(
            "datasvc_db_pool_connections", "Open pool connections by state.", labels=["state", "target"]
        )
        size = GaugeMetricFamily("datasvc_db_pool_size", "Open pool connections.", labels=["target"])
        most = GaugeMetricFamily("datasvc_db_pool_max", "Most connections the pool opens.", labels=["target"])
        waiting = GaugeMetricFamily(
            "datasvc_db_pool_waiting", "Requests waiting for a pooled connection now.", labels=["target"]
        )
        for kind, (open_, idle, max_size, waits) in totals.items():
            connections.add_metric(["in_use", kind], open_ - idle)
            connections.add_metric(["idle", kind], idle)
            size.add_metric([kind], open_)
            most.add_metric([kind], max_size)
            waiting.add_metric([kind], waits)
        yield from (connections, size, most, waiting)


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


def _name(conn: asyncpg.Connection) -> str | None:
    """The ``application_name`` ``conn`` runs under; None when it is not usable any more (see `_open`)."""
    try:
        name: str = conn.get_settings().application_name
    except Exception:
        return None
    return name


def _open(conn: asyncpg.Connection) -> bool:
    """Whether ``conn`` is open and outside a transaction.

    A pooled connection that dies (its backend killed while parked, say) is taken back by asyncpg itself,
    and its proxy then raises InterfaceError ("released back to the pool") even for `is_closed`.
    """
    try:
        # A connection whose statement was cancelled (a caller's deadline, `datasvc.preferences`) still
        # awaits the server's answer to the cancel request: only asyncpg's own release waits for that.
        # `_protocol._is_cancelling()` is private: pinned in pyproject.toml, tests/test_private_apis.py.
        return not conn.is_closed() and not conn.is_in_transaction() and not conn._protocol._is_cancelling()
    except Exception:  # asyncpg's InterfaceError; whatever fails here, the connection is not used
        return False
