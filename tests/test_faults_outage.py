"""Issue 5.1: while the database is unreachable every request is a quick 503, and the service heals alone."""

from __future__ import annotations

import asyncio
import functools
import time

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


async def test_outage_answers_503_at_once_and_recovers_within_2s(settings, database_url):
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
            await until(lambda: len(log.between(up + 2.0, float("inf"))) >= 40, what="40 answers from +2 s")
            stop.set()
            await driver
            ready_up = await c.get("/health/ready")

    outage = log.between(down, up)
    settled = log.between(up + 2.0, float("inf"))
    first_ok = min((a.started + a.seconds for a in log.answers if a.ok and a.started >= up), default=None)
    figure = (
        f"outage: {load.summary(outage)}; after +2 s: {load.summary(settled)}; "
        f"first 2xx {((first_ok or 0) - up) * 1000:.0f} ms after the database came back"
    )
    assert all(a.ok or a.is_503_problem for a in log.answers), figure
    assert outage, figure
    # At once: a refused connection fails without waiting, while a request that waited for a pooled
    # connection would take acquire_timeout (2 s). Measured quiet: max 592 ms (p50 18 ms) on 2 cores.
    assert all(a.seconds < settings.acquire_timeout for a in outage), figure
    # Requests that began in the last half second of the outage may already see the database back.
    assert all(a.is_503_problem for a in log.between(down, up - 0.6)), figure
    # Every answer from 2 s after the database returned is a success (measured quiet: the first 2xx
    # 67 ms after): a generous margin for a loaded machine, yet far below any timeout that could hide.
    assert settled, figure
    assert all(a.ok for a in settled), figure
    assert ready_down.status_code == 503, ready_down.text
    assert ready_down.headers["content-type"] == load.PROBLEM
    assert ready_up.status_code == 200, ready_up.text
    print(figure)


async def test_starts_while_database_is_down_and_becomes_ready_alone(settings, database_url):
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
                while (ready := await c.get("/health/ready")).status_code != 200:
                    assert time.monotonic() - back < 5, ready.text
                    await asyncio.sleep(0.05)
                healed = time.monotonic() - back
    figure = (
        f"start-up with the database down: {startup:.2f} s; ready {healed * 1000:.0f} ms after it returned"
    )
    assert not_ready.status_code == 503, not_ready.text
    assert not_ready.json()["type"].endswith("database-unavailable"), not_ready.text
    assert live.status_code == 200
    assert read.status_code == 503, read.text
    assert read.headers["retry-after"] == "1"
    # With the database refusing, start-up must not wait out even one connect timeout (5 s).
    assert startup < settings.connect_timeout, figure
    print(figure)


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
                while (size := _pool_size((await c.get("/metrics")).text)) < 3:
                    assert time.monotonic() - back < 5, f"pool size {size} 5 s after the database returned"
                    await asyncio.sleep(0.1)
                restored = time.monotonic() - back
                assert (await c.get("/api/v1/users/1")).status_code == 404
    print(f"pool floor of 3 restored {restored * 1000:.0f} ms after the database returned")
