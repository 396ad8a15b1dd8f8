"""The in-flight limit: excess requests are refused at once, liveness never, and slots are given back."""

from __future__ import annotations

import asyncio

import httpx2
from starlette.types import Receive, Scope, Send

from datasvc.limits import CallerLimit, ConcurrencyLimitMiddleware
from datasvc.settings import Settings
from tests.support.waits import until


def _blocking_app(gate: asyncio.Event, entered: list[str]):
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        entered.append(scope["path"])
        await gate.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def test_requests_past_the_limit_are_shed_as_503_problems_but_health_is_not():
    gate, entered = asyncio.Event(), list[str]()
    limited = ConcurrencyLimitMiddleware(_blocking_app(gate, entered), max_in_flight=2)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=limited), base_url="http://t") as c:
        held = [asyncio.create_task(c.get(f"/api/v1/users/{n}")) for n in range(2)]
        await until(lambda: len(entered) >= 2, what="2 requests inside the app")
        shed = await asyncio.wait_for(c.get("/api/v1/users/3"), 30)  # a missing limit blocks here for ever
        health = asyncio.create_task(c.get("/health"))
        await until(lambda: len(entered) >= 3, what="3 requests inside the app")
        gate.set()
        answers = await asyncio.gather(*held, health)
        again = await c.get("/api/v1/users/4")
    assert shed.status_code == 503
    assert shed.headers["content-type"] == "application/problem+json"
    assert shed.headers["retry-after"] == "1"
    assert shed.json()["type"].endswith(":overloaded")
    assert [r.status_code for r in answers] == [200, 200, 200]
    assert again.status_code == 200, "slots must be given back when requests finish"
    assert (limited.in_flight, limited.shed) == (0, 1)


async def test_zero_means_no_limit():
    gate, entered = asyncio.Event(), list[str]()
    gate.set()
    unlimited = ConcurrencyLimitMiddleware(_blocking_app(gate, entered), max_in_flight=0)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=unlimited), base_url="http://t") as c:
        answers = await asyncio.gather(*(c.get("/x") for _ in range(20)))
    assert {r.status_code for r in answers} == {200}


def _caller_header(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"x-caller":
            return str(value.decode())
    return None


async def test_a_caller_past_its_share_gets_429_while_others_are_admitted():
    gate, entered = asyncio.Event(), list[str]()
    callers = CallerLimit(2, _caller_header)
    limited = ConcurrencyLimitMiddleware(_blocking_app(gate, entered), max_in_flight=10, callers=callers)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=limited), base_url="http://t") as c:
        held = [asyncio.create_task(c.get(f"/api/v1/users/{n}", headers={"x-caller": "a"})) for n in range(2)]
        await until(lambda: len(entered) >= 2, what="2 requests inside the app")
        refused = await asyncio.wait_for(c.get("/api/v1/users/3", headers={"x-caller": "a"}), 30)
        other = asyncio.create_task(c.get("/api/v1/users/4", headers={"x-caller": "b"}))
        anonymous = asyncio.create_task(c.get("/api/v1/users/5"))  # no known token: not counted per caller
        await until(lambda: len(entered) >= 4, what="4 requests inside the app")
        assert callers.in_flight == {"a": 2, "b": 1}
        gate.set()
        answers = await asyncio.gather(*held, other, anonymous)
        again = await c.get("/api/v1/users/6", headers={"x-caller": "a"})
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["type"].endswith(":too-many-requests")
    assert [r.status_code for r in answers] == [200, 200, 200, 200]
    assert again.status_code == 200, "a caller's slots must be given back when its requests finish"
    assert callers.in_flight == {}
    assert callers.refused == {"a": 1}
    assert limited.shed == 0


async def test_a_caller_share_of_zero_means_no_per_caller_limit():
    gate, entered = asyncio.Event(), list[str]()
    gate.set()
    callers = CallerLimit(0, _caller_header)
    limited = ConcurrencyLimitMiddleware(_blocking_app(gate, entered), max_in_flight=0, callers=callers)
    async with httpx2.AsyncClient(transport=httpx2.ASGITransport(app=limited), base_url="http://t") as c:
        answers = await asyncio.gather(*(c.get("/x", headers={"x-caller": "a"}) for _ in range(20)))
    assert {r.status_code for r in answers} == {200}


def test_the_default_share_is_a_quarter_of_the_workers_slots():
    assert Settings().caller_limit == 25
    assert Settings(max_in_flight=8).caller_limit == 2
    assert Settings(max_in_flight=2).caller_limit == 1
    assert Settings(max_in_flight=0).caller_limit == 0  # no worker limit: no share of it either
    assert Settings(max_in_flight=8, caller_max_in_flight=5).caller_limit == 5
    assert Settings(caller_max_in_flight=0).caller_limit == 0
