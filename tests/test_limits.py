"""The in-flight limit: excess requests are refused at once, liveness never, and slots are given back."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import time

import httpx2
import pytest
from starlette.types import Receive, Scope, Send

from datasvc.limits import (
    LONGEST_PAUSE,
    PAUSE,
    REFUSALS_PER_SECOND,
    SPREAD,
    CallerLimit,
    ConcurrencyLimitMiddleware,
    Slots,
)
from datasvc.settings import Settings
from tests.support import load
from tests.support.rawhttp import statuses
from tests.support.servers import ThreadServer
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


# -- refused below the app: the HTTP protocol sheds when every slot is taken --------------------------


async def _raw(base_url: str, payload: bytes) -> tuple[bytes, float]:
    """Send ``payload`` on a new connection; what came back until the answer(s) ended, and how long."""
    host, port = base_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    started = time.monotonic()
    writer.write(payload)
    received = b""
    while received.count(b"HTTP/1.1 ") < payload.count(b"HTTP/1.1\r\n") or not received.endswith(b"}"):
        data = await asyncio.wait_for(reader.read(65536), 10)
        if not data:
            break
        received += data
    seconds = time.monotonic() - started
    writer.close()
    return received, seconds


async def test_with_every_slot_taken_the_protocol_refuses_paced_and_liveness_answers(settings, database_url):
    """One slot, held by a PATCH waiting on a row lock: a GET is refused below the app, after PAUSE, as a
    503 problem that keeps the connection; /health is answered; once the slot is free, requests pass."""
    settings = settings.with_overrides(max_in_flight=1, lock_timeout=10.0)
    async with load.admin(database_url) as admin, load.admin(database_url) as locker:
        with ThreadServer(settings) as server:
            async with load.client(server.base_url) as c:
                created = await c.post("/api/v1/users", json=load.unique_user("shed"))
                uid = created.json()["id"]
                lock = locker.conn.transaction()
                await lock.start()
                await locker.run("faults.lock_user", uid)
                holder = asyncio.create_task(c.patch(f"/api/v1/users/{uid}", json={"full_name": "x"}))
                await until(lambda: _eq(admin.run("faults.waiting", load.ADMIN_NAME), 1), timeout=10)
                two = b"GET /api/v1/users/%d HTTP/1.1\r\nHost: x\r\nX-Request-ID: shed-1\r\n\r\n" % uid
                refused, seconds = await _raw(server.base_url, two + two.replace(b"shed-1", b"shed-2"))
                health, _ = await _raw(server.base_url, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                await lock.commit()
                assert (await holder).status_code == 200
                metrics = (await c.get("/metrics")).text
                after = await c.get(f"/api/v1/users/{uid}")
    assert statuses(refused) == [503, 503]
    head = refused.split(b"\r\n\r\n", 1)[0].lower()
    assert b"content-type: application/problem+json" in head
    assert b"retry-after: 1" in head
    assert b"x-request-id: shed-1" in head
    assert b"connection: close" not in head  # refused, not disconnected: the caller's connection stays
    assert b'"type":"urn:datasvc:problem:overloaded"' in refused
    assert seconds >= PAUSE  # paced: a caller in a loop costs at most 1/PAUSE refusals a second
    assert statuses(health) == [200]
    assert 'datasvc_http_shed_total{where="protocol"} 2.0' in metrics
    assert after.status_code == 200


async def _eq(value, expected) -> bool:
    return bool(await value == expected)


def test_refusals_are_answered_at_a_bounded_rate_each_within_retry_after():
    """A thousand connections resending at once: the pause grows with the refusal rate, never past the
    Retry-After, so a worker answers at most REFUSALS_PER_SECOND refusals a second, whatever the callers;
    those past the rate are spread over the last SPREAD seconds, not all answered in the same instant."""
    slots = Slots(1)
    pauses = [slots.pause(100.0) for _ in range(3000)]  # decided in the same instant
    paced = int((LONGEST_PAUSE - PAUSE) * REFUSALS_PER_SECOND)
    assert pauses[0] == pytest.approx(PAUSE)
    steps = [b - a for a, b in itertools.pairwise(pauses[:paced])]
    assert all(step == pytest.approx(1 / REFUSALS_PER_SECOND) for step in steps)
    rest = pauses[paced + 1 :]
    assert all(LONGEST_PAUSE - SPREAD - 1e-9 <= p <= LONGEST_PAUSE + 1e-9 for p in rest)
    assert len({round(p, 3) for p in rest}) > 100  # spread, not one instant
    assert slots.pause(200.0) == pytest.approx(PAUSE)  # the backlog of refusals gone: the least pause again


async def test_answers_a_client_does_not_read_hold_no_slot(settings, caplog):
    """With one slot, connections that ask for a large document several times and never read: each
    answer waits on its client in the transport, not in a slot, so a normal caller is served beside them.
    When they go, the answer being written is dropped: no error, no traceback."""
    settings = settings.with_overrides(max_in_flight=1)
    with ThreadServer(settings) as server:
        hostile = []
        for _ in range(3):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            sock.sendall(b"GET /docs/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
            sock.recv(1, socket.MSG_PEEK)  # its first answer is on its way: the request was admitted
            hostile.append(sock)
        try:
            async with load.client(server.base_url) as c:
                answers = [(await c.get("/api/v1/users/0")).status_code for _ in range(20)]
                metrics = (await c.get("/metrics")).text
        finally:
            for sock in hostile:
                sock.close()
    assert answers == [404] * 20
    assert "datasvc_http_in_flight 1.0" in metrics  # /metrics itself: the unread answers hold none
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
