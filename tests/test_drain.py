"""Issue 9.3: SIGTERM never resets a request already written on an open keep-alive connection.

Without the drain window uvicorn closes idle keep-alive connections at once on SIGTERM; a caller that
has just written a request on one gets "connection reset by peer" (this test with
``drain_seconds=0``: 6 requests reset in 10 runs; docs/scaling.md). With it, every request is answered and
each connection is closed by the server right after an answer carrying ``Connection: close``.
"""

from __future__ import annotations

import asyncio
import signal
import time
from dataclasses import dataclass, field

import httpx2
import pytest

from datasvc.settings import Settings
from tests.support import load
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

RUNS = 20
CALLERS = 40


@dataclass
class _Hammer:
    """``CALLERS`` closed-loop GETs through one keep-alive pool; each caller stops once it was told
    ``Connection: close`` after SIGTERM (from then on its pool would open a new connection)."""

    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warm: asyncio.Event = field(default_factory=asyncio.Event)
    sigterm: asyncio.Event = field(default_factory=asyncio.Event)
    _warm_callers: int = 0

    async def caller(self, client: httpx2.AsyncClient, path: str) -> None:
        counted = False
        while True:
            after_sigterm = self.sigterm.is_set()
            try:
                r = await client.get(path)
            except httpx2.HTTPError as exc:  # a reset, a connection closed under a written request
                self.errors.append(repr(exc))
                return
            self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
            if not counted:
                counted = True
                self._warm_callers += 1
                if self._warm_callers == CALLERS:
                    self.warm.set()
            if after_sigterm and r.headers.get("connection") == "close":
                return


async def test_sigterm_with_keepalive_callers_resets_none(settings: Settings, tmp_path):
    # A long window that the test ends with a second SIGTERM once its callers are done: bounded by the
    # callers, not by a guess at how long they need on a loaded machine.
    settings = settings.with_overrides(drain_seconds=30.0, shutdown_timeout=5.0)
    totals: dict[int, int] = {}
    errors: list[str] = []
    exits: list[float] = []
    for run in range(RUNS):
        server = ProcessServer(settings, tmp_path / f"serve-{run}.log")
        with server:
            async with load.client(server.base_url, connections=CALLERS) as c:
                uid = (await c.post("/api/v1/users", json=load.unique_user("drain"))).json()["id"]
                hammer = _Hammer()
                callers = [
                    asyncio.create_task(hammer.caller(c, f"/api/v1/users/{uid}")) for _ in range(CALLERS)
                ]
                await asyncio.wait_for(hammer.warm.wait(), 20)  # 40 keep-alive connections in use
                server.signal(signal.SIGTERM)
                hammer.sigterm.set()
                await asyncio.wait_for(asyncio.gather(*callers), 20)
                if run == 0:
                    ready = await c.get("/health/ready")
                    assert ready.status_code == 503, ready.text
                    assert ready.json()["type"].endswith(":shutting-down")
                    assert ready.headers["connection"] == "close"
                    assert (await c.get("/health")).status_code == 200  # still alive, only not ready
                stopped = time.monotonic()
                server.signal(signal.SIGTERM)  # the second one ends the window
                code = await asyncio.to_thread(server.wait, 15)
                exits.append(time.monotonic() - stopped)
                assert code == 0
        for status, n in hammer.statuses.items():
            totals[status] = totals.get(status, 0) + n
        errors += hammer.errors

    figure = (
        f"{RUNS} runs x {CALLERS} keep-alive callers through SIGTERM: "
        f"statuses {dict(sorted(totals.items()))}, {len(errors)} transport errors {errors[:3]}; "
        f"exit {max(exits):.2f} s at most after the second SIGTERM"
    )
    assert errors == [], figure
    assert set(totals) == {200}, figure
    print(figure)


@dataclass
class _Reconnecting:
    """Raw-socket callers that reconnect whenever told ``Connection: close``, through the whole drain
    window and past it, until the server refuses them: issue 21.7's callers without a balancer."""

    request: bytes
    statuses: dict[int, int] = field(default_factory=dict)
    written_then_lost: list[str] = field(default_factory=list)  # written, then reset or closed unanswered
    refused: int = 0  # connection refused or never established: nothing written, safe to retry
    answered: asyncio.Event = field(default_factory=asyncio.Event)

    async def caller(self, port: int, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)
            except (OSError, TimeoutError):
                self.refused += 1
                await asyncio.sleep(0.01)
                continue
            try:
                await self._serve(reader, writer, stop)
            finally:
                writer.close()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            writer.write(self.request)
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
                await reader.readexactly(length)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                self.written_then_lost.append(repr(exc))
                return
            status = int(head[9:12])
            self.statuses[status] = self.statuses.get(status, 0) + 1
            self.answered.set()
            if b"\r\nconnection: close\r\n" in head.lower():
                return


async def _reconnecting_runs(settings: Settings, tmp_path, runs: int) -> str:
    settings = settings.with_overrides(drain_seconds=0.5, shutdown_timeout=5.0)
    totals: dict[int, int] = {}
    lost: list[str] = []
    refused = 0
    for run in range(runs):
        with ProcessServer(settings, tmp_path / f"reconnect-{run}.log") as server:
            async with load.client(server.base_url) as c:
                uid = (await c.post("/api/v1/users", json=load.unique_user("drain"))).json()["id"]
            callers = _Reconnecting(b"GET /api/v1/users/%d HTTP/1.1\r\nHost: t\r\n\r\n" % uid)
            stop = asyncio.Event()
            tasks = [asyncio.create_task(callers.caller(server.port, stop)) for _ in range(CALLERS)]
            await asyncio.wait_for(callers.answered.wait(), 20)
            server.signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.wait, 20)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 20)
            assert code == 0
        for status, n in callers.statuses.items():
            totals[status] = totals.get(status, 0) + n
        lost += callers.written_then_lost
        refused += callers.refused
    figure = (
        f"{runs} runs x {CALLERS} reconnecting callers through SIGTERM and the drain window's end: statuses "
        f"{dict(sorted(totals.items()))}, {len(lost)} requests written then reset {lost[:3]}, "
        f"{refused} connections refused (nothing written)"
    )
    assert lost == [], figure
    assert set(totals) == {200}, figure
    return figure


async def test_sigterm_with_reconnecting_callers_resets_no_written_request(settings: Settings, tmp_path):
    print(await _reconnecting_runs(settings, tmp_path, 2))


@pytest.mark.perf
async def test_sigterm_with_reconnecting_callers_resets_no_written_request_20_runs(settings, tmp_path):
    print(await _reconnecting_runs(settings, tmp_path, 20))
