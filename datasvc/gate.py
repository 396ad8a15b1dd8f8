"""Who gets a pool's next connection: first come, first served, handed over directly, same caller first.

asyncpg's pool is not fair. A released connection wakes the first waiting request, but a request arriving
before that one runs takes the connection, and the woken one queues again at the back. Under load
(docs/benchmarks.md: wrk -c32 against a pool of 10) 43% of lookups waited for a connection and 2% waited
10-50 ms, some of them several rounds: our p99 was twice the ceiling's while our p50 was lower.

A `Gate` in front of the pool lets at most ``size`` requests hold its connections and queues the others
in arrival order. A request done with a connection hands it straight to the next waiter (`Gate.release`),
so nobody can take it in between, and asyncpg's release and acquire (a task and a turn of the loop each
way) are skipped while requests queue. With nobody waiting, or a connection unfit to pass on (closed, in
a transaction, taken before the pool was expired), it goes back to the pool.

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
# Hand-overs in a row before a connection goes back through asyncpg's pool, which recycles it after
# ``max_queries`` and rolls back what a request may have left open; under constant load a connection
# would otherwise never return there.
MAX_HAND_OVERS = 1000

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

    __slots__ = ("_background", "_lent", "_waiters", "epoch", "free")

    def __init__(self, size: int) -> None:
        self.free = size
        self._waiters: deque[_Waiter] = deque()
        # id(connection) -> [epoch when taken from the pool, hand-overs since]: only those are handed over.
        self._lent: dict[int, list[int]] = {}
        self.epoch = 0  # `expire` bumps it: connections taken before are not handed over any more
        self._background: set[asyncio.Task[None]] = set()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def enter(self, name: str) -> Handed:
        """Wait for a place; ``name``: the ``application_name`` the request will run under.

        After None the caller takes a connection from the pool and reports it with `taken` (or, if that
        fails, calls `leave`); otherwise it has received the pool and connection to use.
        """
        if self.free > 0 and not self._waiters:
            self.free -= 1
            return None
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
        """The pool's connections were expired: hand none of those out now taken."""
        self.epoch += 1

    async def release(self, pool: Any, conn: Any, reset_within: float) -> None:
        """Hand ``conn`` to a waiter if one waits and the connection is fit; else back to ``pool``."""
        if self._handed_over(pool, conn):
            return
        # The place first: the waiter it wakes asks the pool for a connection when the loop next runs it
        # and gets this one, put back by then. Leaving only after the await below kept each connection
        # idle one more turn of the loop (-10% lookups/s, measured).
        self.leave()
        await pool.release(conn, timeout=reset_within)

    def _handed_over(self, pool: Any, conn: Any) -> bool:
        """Give ``conn`` to a waiter if one waits and it is fit; False: it goes back to the pool."""
        record = self._lent.get(id(conn))
        if (
            self._waiters
            and record is not None
            and record[0] == self.epoch
            and record[1] < MAX_HAND_OVERS
            and not conn.is_closed()
            and not conn.is_in_transaction()
            and (waiter := self._take(conn.get_settings().application_name)) is not None
        ):
            record[1] += 1
            waiter.future.set_result((pool, conn))
            return True
        self._lent.pop(id(conn), None)
        return False

    def _pass_on(self, pool: Any, conn: Any) -> None:
        """A connection handed to a waiter cancelled meanwhile: to the next waiter, or back to the pool."""
        if self._handed_over(pool, conn):
            return
        self.leave()
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
