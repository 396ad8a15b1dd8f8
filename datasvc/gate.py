"""Who gets a pool's next connection: first come, first served, handed over directly, same caller first.

asyncpg's pool is not fair. A released connection wakes the first waiting request, but a request arriving
before that one runs takes the connection, and the woken one queues again at the back. Under load
(docs/benchmarks.md: wrk -c32 against a pool of 10) 43% of lookups waited for a connection and 2% waited
10-50 ms, some of them several rounds: our p99 was twice the ceiling's while our p50 was lower.

A `Gate` in front of the pool lets at most ``size`` requests hold its connections and queues the others
in arrival order. A request done with a connection hands it straight to the next waiter (`Gate.release`),
so nobody can take it in between, and asyncpg's release and acquire (a task and a turn of the loop each
way) are skipped while requests queue. With nobody waiting, a connection fit to pass on is *parked* at the
gate, and the next request to arrive takes it there, again without asyncpg's release and acquire; one
parked for `PARK_SECONDS` goes back to the pool. A connection unfit to pass on (closed, in a transaction,
taken before the pool was expired) goes back to the pool at once.

Why park: with as many connections as requests in flight nobody waits, and every request paid asyncpg's
release and acquire. Behind PgBouncer, 32 requests in flight on 32 client connections cost the service
102 µs of CPU per lookup by id, against 85 µs on 10 connections handed over at the gate
(docs/benchmarks.md, 2026-12-05).

One exception to arrival order, bounded: connections carry their last caller in ``application_name``
(`datasvc.db.Database._name_caller`), and renaming one for another caller costs a round trip: with four
callers in turn, 3 requests in 4 paid it. So a connection goes to the first of the next `LOOK_AHEAD`
waiters of its caller; the head of the queue is passed over at most `MAX_PASSED` times.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import Any

LOOK_AHEAD = 8  # waiters searched for the released connection's caller
MAX_PASSED = 4  # times a waiter can be overtaken by a later one of the connection's caller
# Requests in a row a connection serves (handed over or parked) before it goes back through asyncpg's
# pool, which recycles it after ``max_queries`` and rolls back what a request may have left open; under
# constant load a connection would otherwise never return there.
MAX_HAND_OVERS = 1000
# How long a connection stays parked before it goes back to asyncpg's pool: under load it is taken again
# within milliseconds; an idle one belongs to the pool, whose idle timeout, metrics and close() see it.
PARK_SECONDS = 1.0

# What a waiter receives: None, a place to take a connection from the pool; or (pool, connection), a
# connection handed over by the request that used it last.
Handed = tuple[Any, Any] | None


class _Waiter:
    __slots__ = ("future", "name", "passed")

    def __init__(self, future: asyncio.Future[Handed], name: str) -> None:
        self.future = future
        self.name = name  # the application_name its request will run under
        self.passed = 0


class Gate:
    """``size`` places at one pool's connections: `enter` waits for one; `release` passes it on.

    Pools and connections are asyncpg's (typed ``Any`` here: only ``release``, ``is_closed``,
    ``is_in_transaction`` and ``get_settings`` are used).
    """

    __slots__ = ("_background", "_lent", "_parked", "_sweep", "_waiters", "epoch", "free")

    def __init__(self, size: int) -> None:
        self.free = size  # places not held by a request (a parked connection's place is free)
        self._waiters: deque[_Waiter] = deque()
        # Connections nobody waited for, most recently parked last, with when: (pool, connection, time).
        self._parked: list[tuple[Any, Any, float]] = []
        self._sweep: asyncio.TimerHandle | None = None
        # id(connection) -> [epoch when taken from the pool, hand-overs since]: only those are handed over.
        self._lent: dict[int, list[int]] = {}
        self.epoch = 0  # `expire` bumps it: connections taken before are not handed over any more
        self._background: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    @property
    def parked(self) -> int:
        """Idle connections kept at the gate rather than in the pool (the metrics count them idle)."""
        return len(self._parked)

    async def enter(self, name: str) -> Handed:
        """Wait for a place; ``name``: the ``application_name`` the request will run under.

        After None the caller takes a connection from the pool and reports it with `taken` (or, if that
        fails, calls `leave`); otherwise it has received the pool and connection to use.
        """
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return self._unpark()
        waiter = _Waiter(asyncio.get_running_loop().create_future(), name)
        self._waiters.append(waiter)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter.future.cancelled():  # nothing was handed to it; `_take` may have dropped it already
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            elif (handed := waiter.future.result()) is None:
                self.leave()  # a place granted as the task was cancelled: pass it on
            else:
                self._pass_on(*handed)
            raise

    def taken(self, conn: Any) -> None:
        """``conn`` came from the pool: it may be handed over from now on."""
        self._lent[id(conn)] = [self.epoch, 0]

    def leave(self) -> None:
        """Give a place back without a connection (taking one from the pool failed)."""
        waiter = self._take(None)
        if waiter is None:
            self.free += 1
        else:
            waiter.future.set_result(None)

    def expire(self) -> None:
        """The pool's connections were expired: hand none of those out now taken; the parked go back."""
        self.epoch += 1
        self._unpark_all()

    async def drain(self) -> None:
        """Before the pool closes: every parked connection back to it (its close waits for them)."""
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self._unpark_all()
        if self._background:
            await asyncio.gather(*self._background)

    async def release(self, pool: Any, conn: Any, reset_within: float) -> None:
        """Hand ``conn`` to a waiter, or park it, if it is fit; else back to ``pool``."""
        if self._passed(pool, conn):
            return
        # The place first: the waiter it wakes asks the pool for a connection when the loop next runs it
        # and gets this one, put back by then. Leaving only after the await below kept each connection
        # idle one more turn of the loop (-10% lookups/s, measured).
        self.leave()
        await pool.release(conn, timeout=reset_within)

    def _fit(self, conn: Any) -> bool:
        """Whether ``conn`` may serve another request without going back through the pool first."""
        record = self._lent.get(id(conn))
        return record is not None and record[0] == self.epoch and record[1] < MAX_HAND_OVERS and _open(conn)

    def _passed(self, pool: Any, conn: Any) -> bool:
        """Give ``conn`` to a waiter if one waits, else park it, if it is fit; False: back to the pool."""
        if not self._fit(conn):
            self._lent.pop(id(conn), None)
            return False
        self._lent[id(conn)][1] += 1
        waiter = self._take(conn.get_settings().application_name) if self._waiters else None
        if waiter is not None:
            waiter.future.set_result((pool, conn))
            return True
        self._parked.append((pool, conn, asyncio.get_running_loop().time()))
        if self._sweep is None:
            self._sweep = asyncio.get_running_loop().call_later(PARK_SECONDS, self._sweep_parked)
        self.free += 1  # nobody waits (`_take` found none): the place is free, its connection parked
        return True

    def _unpark(self) -> Handed:
        """The most recently parked connection still fit to serve, for a request given a place; or None."""
        while self._parked:
            pool, conn, _ = self._parked.pop()
            if self._fit(conn):
                return pool, conn
            self._to_pool(pool, conn)
        return None

    def _sweep_parked(self) -> None:
        """The connections parked `PARK_SECONDS` ago or more go back to the pool (they are the first)."""
        self._sweep = None
        now = asyncio.get_running_loop().time()
        stale = 0
        while stale < len(self._parked) and now - self._parked[stale][2] >= PARK_SECONDS:
            stale += 1
        for pool, conn, _ in self._parked[:stale]:
            self._to_pool(pool, conn)
        del self._parked[:stale]
        if self._parked:
            wait = self._parked[0][2] + PARK_SECONDS - now
            self._sweep = asyncio.get_running_loop().call_later(wait, self._sweep_parked)

    def _unpark_all(self) -> None:
        parked, self._parked = self._parked, []
        for pool, conn, _ in parked:
            self._to_pool(pool, conn)

    def _to_pool(self, pool: Any, conn: Any) -> None:
        """A parked connection back to ``pool``, no longer one the gate may hand out."""
        self._lent.pop(id(conn), None)
        self._give_back_later(pool, conn)

    def _pass_on(self, pool: Any, conn: Any) -> None:
        """A connection handed to a waiter cancelled meanwhile: to the next waiter, or back to the pool."""
        if self._passed(pool, conn):
            return
        self.leave()
        self._give_back_later(pool, conn)

    def _give_back_later(self, pool: Any, conn: Any) -> None:
        task = asyncio.get_running_loop().create_task(self._give_back(pool, conn))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _give_back(pool: Any, conn: Any) -> None:
        with contextlib.suppress(Exception):  # asyncpg terminates a connection it cannot reset
            await pool.release(conn)

    def _take(self, name: str | None) -> _Waiter | None:
        """The waiter to serve: the head, or the first of the next few named ``name``; None: nobody.

        A waiter whose task was cancelled (its acquire timed out) stays queued until that task runs and
        removes itself; its future is done by then, and it is skipped here.
        """
        waiters = self._waiters
        while waiters and waiters[0].future.done():
            waiters.popleft()
        if not waiters:
            return None
        chosen = 0
        head = waiters[0]
        # The head has been overtaken at least as often as anyone behind it.
        if name is not None and head.name != name and head.passed < MAX_PASSED:
            for i in range(1, min(len(waiters), LOOK_AHEAD)):
                waiter = waiters[i]
                if waiter.name == name and not waiter.future.done():
                    chosen = i
                    for j in range(i):
                        waiters[j].passed += 1
                    break
        waiter = waiters[chosen]
        del waiters[chosen]
        return waiter


def _open(conn: Any) -> bool:
    """Whether ``conn`` is open and outside a transaction.

    A pooled connection that dies (its backend killed, say, while it was parked) is taken back by asyncpg
    itself, and its proxy then raises InterfaceError ("released back to the pool") even for `is_closed`.
    """
    try:
        # A connection whose statement was cancelled (a caller's deadline, `datasvc.preferences`) still
        # awaits the server's answer to the cancel request: only asyncpg's own release waits for that.
        return not conn.is_closed() and not conn.is_in_transaction() and not conn._protocol._is_cancelling()
    except Exception:  # asyncpg's InterfaceError; whatever fails here, the connection is not used
        return False
