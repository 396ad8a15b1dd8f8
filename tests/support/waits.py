"""Waiting for a condition, never for a length of time: poll until it holds, fail the test past a deadline.

The deadline is only a bound on a hang; a test that passes never waits for it, so it can be generous (a
loaded 2-core CI machine runs several suites at once).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable


async def until(
    predicate: Callable[[], bool | Awaitable[bool]], *, timeout: float = 30.0, what: str = "condition"
) -> None:
    """Return once ``predicate()`` (plain or awaitable) is true; the event loop runs meanwhile."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        await asyncio.sleep(0.02)


def until_blocking(predicate: Callable[[], bool], *, timeout: float = 30.0, what: str = "condition") -> None:
    """Return once ``predicate()`` is true, for tests that drive a server in another process or thread."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.02)
