"""Issue 5.1: while the database is unreachable every request is a quick 503, and the service heals alone."""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable

import httpx2
import pytest

from datasvc.settings import Settings
from tests.support import load
from tests.support.faultproxy import FaultProxy
from tests.support.servers import ThreadServer
from tests.support.waits import until

pytestmark = pytest.mark.slow


def through(proxy: FaultProxy, settings: Settings, database_url: str) -> Settings:
    """The default timeouts (acquire 2 s, connect 5 s): a refused connection fails at once anyway.

    A database host that swallows packets instead costs acquire_timeout per request (asyncpg applies it
    to the whole acquire, connecting included): see the stall test in test_faults_timeouts.py.
    """
    return settings.with_overrides(database_url=proxy.url_for(database_url))


# Every answer begun this long after the database returned must be a success. Measured quiet: the first
# 2xx 67 ms after; the margin is for a loaded CI machine, yet far below any timeout that could hide.
SETTLE = 5.0


async def test_outage_answers_503_at_once_and_recovers(settings, database_url):
    # A request that waited for a connection instead of failing at once would outlast the 5 s outage
    # (acquire_timeout 30 s) and be answered 2xx once the database is back, which the assertions below
    # refuse: "at once" is checked by what is answered, not by a clock.
    settings = settings.with_overrides(acquire_timeout=30.0)
    with FaultProxy() as proxy, ThreadServer(through(proxy, settings, database_url)) as server:
        async with load.client(server.base_url) as c:
            seed = await c.post("/api/v1/users", json=load.unique_user("seed"))
            assert seed.status_code == 201, seed.text
            read = functools.partial(load.read_user, user_id=seed.json()["id"])
            log, stop = load.Log(), asyncio.Event()
            driver = asyncio.create_task(
                load.steady(c, log, stop, (read, load.create_user), workers=4, pause=0.002)
            )
            await until(lambda: sum(a.ok for a in log.answers) >= 40, what="the load served normally")
            await asyncio.to_thread(proxy.set_mode, "close")
            down = time.monotonic()  # requests begun earlier may still have been answered normally
            await until(lambda: log.between(down, float("inf")) != [], what="an answer during the outage")
            ready_down = await c.get("/health/ready")
            # The outage's length is the scenario, not a synchronisation: the database stays away 5 s.
            await asyncio.sleep(max(0.0, down + 5.0 - time.monotonic()))
            up = time.monotonic()
            await asyncio.to_thread(proxy.set_mode, "pass")
            await until(
                lambda: len(log.between(up + SETTLE, float("inf"))) >= 40,
                timeout=SETTLE + 30,
                what="40 answers once settled",
            )
            stop.set()
            await driver
            ready_up = await c.get("/health/ready")

    outage = log.between(down, up)
    settled = log.between(up + SETTLE, float("inf"))
    first_ok = min((a.started + a.seconds for a in log.answers if a.ok and a.started >= up), default=None)
    figure = (
        f"outage: {load.summary(outage)}; after +{SETTLE:.0f} s: {load.summary(settled)}; "
        f"first 2xx {((first_ok or 0) - up) * 1000:.0f} ms after the database came back"
    )
    assert all(a.ok or a.is_503_problem for a in log.answers), figure
    assert outage, figure
    # At once: every request begun during the outage is refused, none waits for the database to return
    # (measured quiet: max 592 ms, p50 18 ms, on 2 cores). Those begun in its last half second may
    # already see the database back.
    assert all(a.is_503_problem for a in log.between(down, up - 0.6)), figure
    assert settled, figure
    assert all(a.ok for a in settled), figure
    assert ready_down.status_code == 503, ready_down.text
    assert ready_down.headers["content-type"] == load.PROBLEM
    assert ready_up.status_code == 200, ready_up.text
    print(figure)


async def test_starts_while_database_is_down_and_becomes_ready_alone(settings, database_url):
    # A start-up that waited for the database would wait out at least one connect timeout: 20 s here,
    # far above a start-up that does not wait even on a loaded machine (measured quiet: 0.1 s).
    settings = settings.with_overrides(connect_timeout=20.0)
    with FaultProxy() as proxy:
        proxy.set_mode("close")
        started = time.monotonic()
        with ThreadServer(through(proxy, settings, database_url)) as server:
            startup = time.monotonic() - started
            async with load.client(server.base_url) as c:
                not_ready = await c.get("/health/ready")
                live = await c.get("/health")
                read = await c.get("/api/v1/users/1")
                await asyncio.to_thread(proxy.set_mode, "pass")
                back = time.monotonic()
                await until(_ready(c), timeout=30, what="ready once the database is back")
                healed = time.monotonic() - back
    figure = (
        f"start-up with the database down: {startup:.2f} s; ready {healed * 1000:.0f} ms after it returned"
    )
    assert not_ready.status_code == 503, not_ready.text
    assert not_ready.json()["type"].endswith("database-unavailable"), not_ready.text
    assert live.status_code == 200
    assert read.status_code == 503, read.text
    assert read.headers["retry-after"] == "1"
    # With the database refusing, start-up must not wait out even one connect timeout.
    assert startup < settings.connect_timeout, figure
    print(figure)


def _ready(c: httpx2.AsyncClient) -> Callable[[], Awaitable[bool]]:
    async def ready() -> bool:
        return (await c.get("/health/ready")).status_code == 200

    return ready


def _floor_of(c: httpx2.AsyncClient, size: int) -> Callable[[], Awaitable[bool]]:
    async def floor() -> bool:
        return _pool_size((await c.get("/metrics")).text) >= size

    return floor


def _pool_size(metrics_text: str) -> float:
    line = next(
        line
        for line in metrics_text.splitlines()
        if line.startswith('datasvc_db_pool_size{target="primary"} ')
    )
    return float(line.split()[1])


async def test_pool_started_without_the_database_regains_its_warm_floor(settings, database_url):
    settings = settings.with_overrides(pool_min_size=3, pool_max_size=4)
    with FaultProxy() as proxy:
        proxy.set_mode("close")
        with ThreadServer(through(proxy, settings, database_url)) as server:
            async with load.client(server.base_url) as c:
                assert (await c.get("/health/ready")).status_code == 503
                await asyncio.to_thread(proxy.set_mode, "pass")
                back = time.monotonic()
                # Nothing but the scrape runs: only the restored floor can open three connections.
                await until(_floor_of(c, 3), timeout=30, what="a pool of 3 once the database is back")
                restored = time.monotonic() - back
                assert (await c.get("/api/v1/users/1")).status_code == 404
    print(f"pool floor of 3 restored {restored * 1000:.0f} ms after the database returned")
