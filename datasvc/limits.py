"""Load shedding: past ``max_in_flight`` concurrent requests, answer 503 at once instead of queueing.

A request that cannot be served soon is better refused in microseconds, with ``Retry-After``, than left
to wait for a pooled connection until the caller's own timeout fires: the caller can retry elsewhere,
and the requests already admitted keep their latency. Liveness (``/health``) is never shed, so an
orchestrator does not restart a process for being busy. Pure ASGI: one counter, no task per request.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from datasvc.errors import Overloaded
from datasvc.responses import send_problem

NEVER_SHED = frozenset({"/health"})


class ConcurrencyLimitMiddleware:
    """Serve at most ``max_in_flight`` HTTP requests at once (0: no limit); shed the rest as 503."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.max_in_flight or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            self.shed += 1
            error = Overloaded(f"more than {self.max_in_flight} requests in flight; retry shortly")
            await send_problem(scope, send, error)
            return
        # One event loop per worker: a plain counter needs no lock.
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
