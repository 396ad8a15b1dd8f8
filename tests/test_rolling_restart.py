"""Issue 9.3: two `datasvc serve` instances behind a real HAProxy, restarted one after the other under
continuous load: no request fails.

Each restart is what an operator (or an orchestrator) does: SIGTERM to one instance, wait until the
balancer has taken it out, a second SIGTERM to end its drain window (rather than a window of a guessed
length), wait for it to exit, start it again, wait until the balancer has it back in rotation, then the
next. The balancer retries
nothing (``retries 0``), so a request the service dropped would reach the caller as a failure.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import signal
import time
from dataclasses import dataclass, field

import httpx2
import pytest

from datasvc.settings import Settings
from tests.support import load
from tests.support.haproxy import HAProxy
from tests.support.servers import ProcessServer
from tests.support.waits import until

pytestmark = pytest.mark.slow

CALLERS = 8


@dataclass
class _Traffic:
    """Closed-loop callers through the balancer: reads, creates and listing pages, each answer kept."""

    answers: list[tuple[float, str, int, str]] = field(default_factory=list)  # (t, kind, status, served by)
    errors: list[str] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    def served_by(self, server: str, since: float) -> int:
        return sum(1 for t, _, status, by in self.answers if by == server and t >= since and status < 500)

    async def caller(self, client: httpx2.AsyncClient, uid: int, offset: int) -> None:
        kinds = ("read", "create", "list")
        for i in itertools.count(offset):
            if self.stop.is_set():
                return
            kind = kinds[i % len(kinds)]
            try:
                if kind == "read":
                    r = await client.get(f"/api/v1/users/{uid}")
                elif kind == "create":
                    r = await client.post("/api/v1/users", json=load.unique_user("roll"))
                else:
                    r = await client.get("/api/v1/users", params={"limit": 5, "count": "none"})
            except httpx2.HTTPError as exc:
                self.errors.append(f"{kind}: {exc!r}")
                continue
            self.answers.append((time.monotonic(), kind, r.status_code, r.headers.get("x-served-by", "")))


async def test_rolling_restart_behind_haproxy_fails_no_request(settings: Settings, tmp_path):
    # The window only has to outlast the balancer's detection (FALL checks 100 ms apart): a long one that
    # the test ends with a second SIGTERM once HAProxy has taken the instance out, so a loaded machine's
    # slower checks cannot end the window first.
    shared = settings.with_overrides(
        drain_seconds=30.0, shutdown_timeout=5.0, cursor_secret=secrets.token_urlsafe(32)
    )
    instances = {name: ProcessServer(shared, tmp_path / f"serve-{name}.log") for name in ("a", "b")}
    restarts: list[str] = []
    lb = HAProxy(tmp_path, {name: s.port for name, s in instances.items()})
    with instances["a"], instances["b"], lb:
        for name in instances:
            lb.wait_for(name, "UP")
        async with load.client(lb.base_url, connections=CALLERS) as c:
            uid = (await c.post("/api/v1/users", json=load.unique_user("seed"))).json()["id"]
            traffic = _Traffic()
            callers = [asyncio.create_task(traffic.caller(c, uid, n)) for n in range(CALLERS)]
            began = time.monotonic()
            await until(lambda: min(traffic.served_by(s, began) for s in instances) > 20, timeout=20.0)
            for name, server in instances.items():
                sigterm = time.monotonic()
                server.signal(signal.SIGTERM)
                down = await asyncio.to_thread(lb.wait_for, name, "DOWN")
                server.signal(signal.SIGTERM)  # the second one ends the drain window
                code = await asyncio.to_thread(server.wait, 30)
                exited = time.monotonic() - sigterm
                await asyncio.to_thread(server.start)
                up = await asyncio.to_thread(lb.wait_for, name, "UP")
                back = time.monotonic()
                await until(lambda: traffic.served_by(name, back) > 20, timeout=20.0)  # noqa: B023 (awaited here)
                restarts.append(
                    f"{name}: out of rotation {down:.2f} s after SIGTERM, exit code {code} after "
                    f"{exited:.2f} s, back in rotation {up:.2f} s after its restart"
                )
                assert code == 0, restarts[-1]
            traffic.stop.set()
            await asyncio.gather(*callers)

    statuses: dict[int, int] = {}
    for _, _, status, _ in traffic.answers:
        statuses[status] = statuses.get(status, 0) + 1
    by_server = {s: sum(1 for a in traffic.answers if a[3] == s) for s in instances}
    failed = [a for a in traffic.answers if not 200 <= a[2] < 300]
    figure = (
        f"{len(traffic.answers)} requests through HAProxy during 2 rolling restarts, {CALLERS} callers: "
        f"statuses {dict(sorted(statuses.items()))}, by instance {by_server}, "
        f"{len(traffic.errors)} transport errors {traffic.errors[:3]}; " + "; ".join(restarts)
    )
    assert traffic.errors == [], figure
    assert failed == [], figure
    print(figure)
