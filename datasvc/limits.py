"""Load shedding and fair share: refuse at once what cannot be served soon, and what one caller overdraws.

Two bounds, both answered in microseconds with ``Retry-After`` instead of a queue:

- ``max_in_flight`` for the whole worker (503 ``overloaded``): a request that cannot be served soon is
  better refused than left to wait for a pooled connection until the caller's own timeout fires; the
  requests already admitted keep their latency.
- ``per_caller`` for one authenticated caller (429 ``too-many-requests``, `CallerLimit`): one caller in a
  loop cannot take every slot, so the others are neither shed nor queued behind it.

Liveness (``/health``) is never shed, so an orchestrator does not restart a process for being busy. Pure
ASGI: counters, no task per request; one event loop per worker, so no lock.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from datasvc.errors import ServiceUnavailable, TooManyRequests
from datasvc.responses import send_problem

NEVER_SHED = frozenset({"/health"})
# Where `CallerLimit.admit` leaves the caller it counted, for `ConcurrencyLimitMiddleware` to release.
_ADMITTED = "admitted_caller"


class CallerLimit:
    """At most ``per_caller`` requests of one caller in flight (0: no limit); the excess is 429.

    The guard calls `admit` once it knows the caller (after the token and scope checks); the slot is given
    back by `ConcurrencyLimitMiddleware` when the response is sent, whatever happened in between.
    """

    def __init__(self, per_caller: int) -> None:
        self.per_caller = per_caller
        self.in_flight: dict[str, int] = {}
        self.refused: dict[str, int] = {}  # 429s by caller: callers are configured, so the keys are bounded

    def admit(self, scope: Scope, caller: str) -> None:
        if not self.per_caller:
            return
        held = self.in_flight.get(caller, 0)
        if held >= self.per_caller:
            self.refused[caller] = self.refused.get(caller, 0) + 1
            raise TooManyRequests(
                f"caller {caller} has {self.per_caller} requests in flight, its share; retry shortly"
            )
        self.in_flight[caller] = held + 1
        scope["state"][_ADMITTED] = caller

    def release(self, caller: str) -> None:
        held = self.in_flight[caller] - 1
        if held:
            self.in_flight[caller] = held
        else:
            del self.in_flight[caller]  # the map holds only callers with requests in flight


class ConcurrencyLimitMiddleware:
    """Serve at most ``max_in_flight`` HTTP requests at once (0: no limit); shed the rest as 503.

    Also gives back the per-caller slot `CallerLimit.admit` took further in, once the response is sent.
    """

    def __init__(self, app: ASGIApp, *, max_in_flight: int, callers: CallerLimit | None = None) -> None:
        self.app = app
        self.max_in_flight = max_in_flight
        self.callers = callers
        self.in_flight = 0
        self.shed = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        if self.max_in_flight and self.in_flight >= self.max_in_flight:
            self.shed += 1
            error = ServiceUnavailable(
                f"more than {self.max_in_flight} requests in flight; retry shortly", slug="overloaded"
            )
            await send_problem(scope, send, error)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            caller = scope.get("state", {}).pop(_ADMITTED, None)
            if caller is not None and self.callers is not None:
                self.callers.release(caller)
