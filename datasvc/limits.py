"""Load shedding and fair share: refuse what cannot be served soon, and what one caller overdraws.

Two bounds, both answered with ``Retry-After`` instead of a queue:

- ``max_in_flight`` for the whole worker (503 ``overloaded``, at once): a request that cannot be served
  soon is better refused in microseconds than left to wait for a pooled connection until the caller's own
  timeout fires; the requests already admitted keep their latency.
- ``per_caller`` for one authenticated caller (429 ``too-many-requests``, `CallerLimit`): one caller in a
  loop cannot take every slot, so the others are neither shed nor queued behind it. It is checked first,
  so an over-eager caller is told it is the one over its share rather than that the service is full.

A request holds its slot from the moment it is admitted, its body already read (`datasvc.bodies`),
until its answer is handed to the transport: writing the answer waits on the client, not on us, so it
holds none. Without callers' shares, a bodiless request that is not pipelined is admitted by the HTTP
protocol as it is parsed (`datasvc.protocol`: the slot taken there, ``scope[RESERVED]`` set, given back
there): refused cheaply before any task exists, or holding its slot, with no second check here. The
others (a body to read first, a request pipelined behind another, any request while callers have shares:
`Slots.at_parse`) take theirs here.

Liveness (``/health``) is never shed, so an orchestrator does not restart a process for being busy. Pure
ASGI: counters, no task of our own; one event loop per worker, so no lock.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datasvc.bodies import BodyReader
from datasvc.errors import Overloaded, TooManyRequests
from datasvc.responses import send_problem

NEVER_SHED = frozenset({"/health"})
# A refused caller's answer waits this long. A caller in a loop resends the moment it is refused, and each
# refusal still costs the worker a parse, a token hash and an answer: unpaced, 32 such connections kept
# the one worker's event loop busy and every other caller's requests waited their turn behind them
# (docs/security.md). Paced, a looping connection costs ~1/PAUSE refusals a second. A well-behaved
# caller loses nothing: it waits Retry-After (1 s) anyway.
PAUSE = 0.25
# At most this many refusals wait at once (each holds its connection's request task); past it, at once.
MAX_PAUSED = 1024
# Refusals the protocol answers per second per worker, at most (`Slots.pause`): a thousand connections in
# a resend loop (wrk, a client ignoring Retry-After) would otherwise get 1/PAUSE refusals a second each and
# the worker would spend its CPU refusing. Past this rate each refusal waits longer, up to `LONGEST_PAUSE`.
REFUSALS_PER_SECOND = 1000
# The longest a refusal waits: the Retry-After it carries (a caller honouring it loses nothing).
LONGEST_PAUSE = 1.0
# Past the rate, a refusal waits LONGEST_PAUSE less up to this much, at random: connections refused in the
# same burst (a thousand connecting at once) do not all come back in the same instant a second later.
SPREAD = 0.25
# The scope key the protocol sets on a request it admitted with its slot already taken.
RESERVED = "datasvc.reserved"


class Reservation(Protocol):
    """A worker slot the HTTP protocol took for a request (``scope[RESERVED]``)."""

    def give_back(self) -> None:
        """Free the slot now (idempotent): the request waits on something else than our work."""


class CallerLimit:
    """At most ``per_caller`` requests of one caller in flight per worker (0: no limit); the excess is 429.

    ``identify`` names the caller from the request's token before routing (`Authenticator.identify`);
    requests without a known token are not counted here (the worker's limit and the 401 deal with them).
    """

    def __init__(self, per_caller: int, identify: Callable[[Scope], str | None]) -> None:
        self.per_caller = per_caller
        self.identify = identify
        self.in_flight: dict[str, int] = {}  # only callers with requests in flight
        self.refused: dict[str, int] = {}  # 429s by caller: callers are configured, so the keys are bounded
        self.paused = 0

    def over_share(self, scope: Scope) -> tuple[str | None, bool]:
        """The request's caller (None: not counted) and whether it already has its share in flight."""
        if not self.per_caller:
            return None, False
        caller = self.identify(scope)
        return caller, caller is not None and self.in_flight.get(caller, 0) >= self.per_caller

    def take(self, caller: str) -> None:
        self.in_flight[caller] = self.in_flight.get(caller, 0) + 1

    def give_back(self, caller: str) -> None:
        held = self.in_flight[caller] - 1
        if held:
            self.in_flight[caller] = held
        else:
            del self.in_flight[caller]

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        """The refusals by caller and the share, as Prometheus families (this worker's own)."""
        if not self.per_caller:
            return
        limited = CounterMetricFamily(
            "datasvc_caller_limited",
            "Requests refused 429 because their caller had DATASVC_CALLER_MAX_IN_FLIGHT in flight.",
            labels=["caller"],
        )
        for name, count in sorted(self.refused.items()):
            limited.add_metric([name], count)
        yield limited
        yield GaugeMetricFamily(
            "datasvc_caller_max_in_flight",
            "Requests one caller may have in flight (per worker).",
            value=self.per_caller,
        )

    async def refuse(self, scope: Scope, send: Send, caller: str) -> None:
        self.refused[caller] = self.refused.get(caller, 0) + 1
        scope.setdefault("state", {})["caller"] = caller  # the access log names who was refused
        if self.paused < MAX_PAUSED:
            self.paused += 1
            try:
                await asyncio.sleep(PAUSE)
            finally:
                self.paused -= 1
        error = TooManyRequests(f"caller {caller} has its share, {self.per_caller} requests, in flight")
        await send_problem(scope, send, error)


class Slots:
    """The worker's in-flight slots: how many are taken, the bound, and how many requests were shed.

    One per app, shared by `ConcurrencyLimitMiddleware` (which takes and gives back slots) and the HTTP
    protocol (`datasvc.protocol`), which reads `full` to refuse before a request costs a task.

    ``at_parse``: whether the protocol takes a bodiless request's slot as it parses it. Not with callers'
    shares: a burst of one caller's requests over its share would hold every slot between their parsing
    and their 429, and another caller's request parsed meanwhile would be refused 503; the middleware
    takes the slot then, once the caller is known to be within its share.
    """

    __slots__ = ("at_parse", "in_flight", "limit", "next_refusal", "shed", "shed_early")

    def __init__(self, limit: int, *, at_parse: bool = True) -> None:
        self.limit = limit
        self.at_parse = at_parse
        self.in_flight = 0
        self.shed = 0  # refused by the middleware
        self.shed_early = 0  # refused by the protocol, before the app
        self.next_refusal = 0.0  # the loop time before which no further refusal is answered

    def full(self) -> bool:
        return bool(self.limit) and self.in_flight >= self.limit

    def pause(self, now: float) -> float:
        """How long the refusal decided at loop time ``now`` waits before it is answered.

        At least `PAUSE`; refusals are answered `REFUSALS_PER_SECOND` at most, one after the other, so
        under a flood the pause grows with the refusal rate, up to `LONGEST_PAUSE` (past it, spread over
        its last `SPREAD`: each connection is refused about once a second, whatever their number).
        """
        at = max(now + PAUSE, self.next_refusal)
        if at > now + LONGEST_PAUSE:
            at = now + LONGEST_PAUSE - SPREAD * random.random()  # noqa: S311 (pacing, not a secret)
            return at - now
        self.next_refusal = at + 1 / REFUSALS_PER_SECOND
        return at - now


class ConcurrencyLimitMiddleware:
    """Serve at most ``max_in_flight`` HTTP requests at once (0: no limit) and ``callers``' share each.

    ``bodies``: a request's body is read first (`datasvc.bodies`), so a slow upload holds no slot.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_in_flight: int,
        callers: CallerLimit | None = None,
        slots: Slots | None = None,
        bodies: BodyReader | None = None,
    ) -> None:
        self.app = app
        self.bodies = bodies  # a request's body is read whole first, outside any slot
        self.max_in_flight = max_in_flight
        self.callers = callers if callers is not None else CallerLimit(0, _nobody)
        self.slots = slots if slots is not None else Slots(max_in_flight)

    @property
    def in_flight(self) -> int:
        return self.slots.in_flight

    @property
    def shed(self) -> int:
        return self.slots.shed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        callers = self.callers
        if RESERVED in scope and not callers.per_caller:
            # The protocol took the worker's slot and gives it back; no caller share to count.
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        bodies = self.bodies
        if bodies is not None and bodies.expects(scope):
            replay = await bodies.read(scope, receive, send)
            if replay is None:  # answered: 408 or 413
                return
            receive = replay
        if scope["path"] in NEVER_SHED:
            await self.app(scope, receive, send)
            return
        caller, over = callers.over_share(scope)
        reserved: Reservation | None = scope.get(RESERVED)
        if over and caller is not None:
            if reserved is not None:
                reserved.give_back()  # the 429 waits its pause without a worker slot
            await callers.refuse(scope, send, caller)
            return
        slots = self.slots
        if reserved is None and slots.full():
            slots.shed += 1
            await send_problem(scope, send, overloaded(slots.limit))
            return
        if reserved is None:
            slots.in_flight += 1
        if caller is not None:
            callers.take(caller)
        held = True

        def give_back() -> None:
            nonlocal held
            if held:
                held = False
                if reserved is None:
                    slots.in_flight -= 1
                if caller is not None:
                    callers.give_back(caller)

        async def send_then_give_back(message: Message) -> None:
            # The answer is made: from here on its writing waits on the client's reading (and the send
            # timeout of datasvc.protocol), never in a slot that another caller's request could use.
            if message["type"] == "http.response.start":
                give_back()
            await send(message)

        try:
            await self.app(scope, receive, send_then_give_back)
        finally:
            give_back()


def overloaded(limit: int) -> Overloaded:
    return Overloaded(f"more than {limit} requests in flight; retry shortly")


def _nobody(scope: Scope) -> None:
    return None


class SlotsCollector(Collector):
    """``datasvc_http_shed_total{where}`` and ``datasvc_http_in_flight``, read when scraped."""

    def __init__(self, slots: Slots) -> None:
        self.slots = slots

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        shed = CounterMetricFamily(
            "datasvc_http_shed",
            "Requests refused 503 overloaded with every DATASVC_MAX_IN_FLIGHT slot taken: by the HTTP "
            "protocol before the app (protocol, paced), or by the limit middleware (app).",
            labels=["where"],
        )
        shed.add_metric(["protocol"], self.slots.shed_early)
        shed.add_metric(["app"], self.slots.shed)
        yield shed
        yield GaugeMetricFamily(
            "datasvc_http_in_flight",
            "Requests holding a DATASVC_MAX_IN_FLIGHT slot now.",
            value=self.slots.in_flight,
        )
