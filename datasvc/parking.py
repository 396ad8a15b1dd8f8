"""Connections parked for the next request: fit to serve, nobody waiting for them, kept a short while.

`datasvc.pool.Pool` parks a released connection when no request waits, so that the next one takes it
without asyncpg's release and acquire (a task and a turn of the loop each way). A connection parked
`PARK_SECONDS` leaves: the pool gives it back to asyncpg's pool, whose idle timeout and close then see it.
This module keeps the order and the clock; what becomes of a connection that leaves is the pool's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg

# How long a connection stays parked: under load it is taken again within milliseconds; an idle one
# belongs to asyncpg's pool, whose idle timeout and metrics see it.
PARK_SECONDS = 1.0
LOOK_AHEAD = 8  # parked connections searched, most recent first, for the caller's name


class Parking:
    """The parked connections of one pool, most recently parked last; ``leave`` takes one back."""

    def __init__(self, leave: Callable[[asyncpg.Connection], None]) -> None:
        self._leave = leave
        self._parked: list[tuple[Any, float, str | None]] = []  # (connection, when, application_name)
        self._sweep: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        return len(self._parked)

    def connections(self) -> list[asyncpg.Connection]:
        return [conn for conn, _, _ in self._parked]

    def park(self, conn: asyncpg.Connection, name: str | None) -> None:
        """Keep ``conn``, whose ``application_name`` is ``name``, for the next request."""
        loop = asyncio.get_running_loop()
        self._parked.append((conn, loop.time(), name))
        if self._sweep is None:
            self._sweep = loop.call_later(PARK_SECONDS, self._sweep_parked)

    def take(self, name: str | None) -> asyncpg.Connection | None:
        """A parked connection, one of the last few named ``name`` if any, else the last parked; or None.

        Whether it is still fit to serve is for the pool to judge (and to make one that is not leave).
        """
        parked = self._parked
        if name is not None:
            for i in range(len(parked) - 1, max(-1, len(parked) - 1 - LOOK_AHEAD), -1):
                if parked[i][2] == name:
                    conn: asyncpg.Connection = parked.pop(i)[0]
                    return conn
        return parked.pop()[0] if parked else None

    def empty(self) -> None:
        """Every parked connection leaves (the pool expired its connections, or is closing)."""
        parked, self._parked = self._parked, []
        for conn, _, _ in parked:
            self._leave(conn)

    def close(self) -> None:
        if self._sweep is not None:
            self._sweep.cancel()
            self._sweep = None
        self.empty()

    def _sweep_parked(self) -> None:
        """The connections parked `PARK_SECONDS` ago or more leave (they are the first)."""
        self._sweep = None
        now = asyncio.get_running_loop().time()
        stale = 0
        while stale < len(self._parked) and now - self._parked[stale][1] >= PARK_SECONDS:
            stale += 1
        for conn, _, _ in self._parked[:stale]:
            self._leave(conn)
        del self._parked[:stale]
        if self._parked:
            wait = self._parked[0][1] + PARK_SECONDS - now
            self._sweep = asyncio.get_running_loop().call_later(wait, self._sweep_parked)
