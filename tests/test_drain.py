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
