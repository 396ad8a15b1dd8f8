"""Who gets a pool's next place: requests in arrival order, the same caller first, a share per caller.

A `datasvc.pool.Pool` has ``size`` places; a request holds one from its acquire to its release. This
module decides only the order and the shares, never which connection: a waiter's future is completed by
the pool, with a connection handed over or None (take one from asyncpg's pool).

- **arrival order**: a request that finds no free place, or others already waiting, queues at the back;
- **same caller first**: a connection carries its last caller in ``application_name``, and renaming it
  costs a round trip, so `Waitlist.take` prefers one of the next `LOOK_AHEAD` waiters of that name; the
  head of the queue is passed over at most `MAX_PASSED` times;
- **a share per caller**: an authenticated caller holds at most all places but `RESERVE`, so one caller
  flooding slow statements leaves a connection for the others' cheap ones; the in-flight share
  (`datasvc.limits`) counts requests, this one counts connections held.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Iterator
from typing import Any

LOOK_AHEAD = 8  # waiters searched for the released connection's caller
MAX_PASSED = 4  # times a waiter can be overtaken by a later one of the connection's caller
RESERVE = 1  # places one authenticated caller always leaves to the others


class Waiter:
    """A request queued for a place; its future's result: a connection handed over, or None."""

    __slots__ = ("caller", "future", "name", "passed")

    def __init__(self, future: asyncio.Future[Any], name: str, caller: str | None) -> None:
        self.future = future
        self.name = name  # the application_name its request runs under
        self.caller = caller
        self.passed = 0


class Waitlist:
    """The places of one pool: how many are free, who waits for one, how many each caller holds."""

    def __init__(self, size: int) -> None:
        self.free = size  # places not held by a request (a parked connection's place is free)
        self.per_caller = max(1, size - RESERVE)
        self._waiters: deque[Waiter] = deque()
        self._held: dict[str, int] = {}  # places held per authenticated caller

    @property
    def queued(self) -> bool:
        return bool(self._waiters)

    def enter(self, caller: str | None) -> bool:
        """Take a free place at once, if nobody queues and ``caller`` is within its share."""
        if self.free > 0 and not self._waiters and self.fits_share(caller):
            self.free -= 1
            self.hold(caller)
            return True
        return False

    def join(self, name: str, caller: str | None) -> Waiter:
        """Queue at the back; the pool completes the waiter's future when a place is its turn."""
        waiter = Waiter(asyncio.get_running_loop().create_future(), name, caller)
        self._waiters.append(waiter)
        return waiter

    def leave(self, waiter: Waiter) -> None:
        """A waiter whose task was cancelled before it was served; `take` may have dropped it already."""
        with contextlib.suppress(ValueError):
            self._waiters.remove(waiter)

    def clear(self) -> list[Waiter]:
        """Every waiter, removed (the pool is closing)."""
        waiters = list(self._waiters)
        self._waiters.clear()
        return waiters

    def granted(self) -> Iterator[Waiter]:
        """The waiters given a free place now, each holding it already, in the order they are served."""
        while self.free > 0 and (waiter := self.take(None)) is not None:
            self.free -= 1
            self.hold(waiter.caller)
            yield waiter

    def fits_share(self, caller: str | None) -> bool:
        return caller is None or self._held.get(caller, 0) < self.per_caller

    def hold(self, caller: str | None) -> None:
        if caller is not None:
            self._held[caller] = self._held.get(caller, 0) + 1

    def unhold(self, caller: str | None) -> None:
        if caller is not None:
            held = self._held[caller] - 1
            if held:
                self._held[caller] = held
            else:
                del self._held[caller]

    def take(self, name: str | None) -> Waiter | None:
        """The waiter to serve: the first within its share, or one of the next few named ``name``.

        A waiter whose task was cancelled (its acquire timed out) stays queued until that task runs and
        removes itself; its future is done by then, and it is skipped here.
        """
        waiters = self._waiters
        while waiters and waiters[0].future.done():
            waiters.popleft()
        head = chosen = -1
        for i, waiter in enumerate(waiters):
            if waiter.future.done() or not self.fits_share(waiter.caller):
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
