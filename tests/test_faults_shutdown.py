"""Issue 5.5: SIGTERM lets every in-flight request finish, exits within the grace period, closes the pool."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx2
import pytest

from datasvc.settings import Settings
from tests.support import load
from tests.support.servers import ProcessServer
from tests.support.waits import until

pytestmark = pytest.mark.slow


async def test_sigterm_with_100_requests_in_flight_loses_none(settings: Settings, database_url, tmp_path):
    settings = settings.with_overrides(
        pool_min_size=1,
        pool_max_size=4,
        acquire_timeout=10.0,
        lock_timeout=10.0,
        shutdown_timeout=5.0,
        drain_seconds=0.5,  # requests in flight keep being served through the drain window, then the grace
        max_in_flight=0,  # all 100 inside, and the /metrics scrapes that watch them
    )
    server = ProcessServer(settings, tmp_path / "serve.log")
    async with load.admin(database_url) as admin, load.admin(database_url) as locker:
        with server:
            async with load.client(server.base_url, connections=110, timeout=20) as c:
                seed = await c.post("/api/v1/users", json=load.unique_user("seed"))
                uid = seed.json()["id"]
                # Writes block on a table lock, holding every pooled connection; reads then queue for
                # the pool. So all 100 are inside the service, none finished, when SIGTERM arrives.
                hold = locker.conn.transaction()
                await hold.start()
                await locker.run("faults.lock_users_for_writes")
                writes = [asyncio.create_task(load.create_user(c)) for _ in range(50)]
                await until(lambda: _count(admin.run("faults.waiting", load.ADMIN_NAME), 4))
                reads = [asyncio.create_task(load.read_user(c, uid)) for _ in range(50)]
                # 4 writes hold the pool's connections; the other 96 requests wait for one.
                await until(lambda: _pool_waiting(c, 96), what="96 requests waiting for the pool")
                in_flight = sum(not t.done() for t in writes + reads)
                server.signal(signal.SIGTERM)
                sigterm = time.monotonic()
                # The drain window over, uvicorn closes its listener and gives in-flight requests the
                # grace period: release them only then, so they are served during the shutdown itself.
                await until(lambda: _refused(server.base_url), what="the listener closed after the drain")
                await hold.commit()
                answers = await asyncio.gather(*writes, *reads)
                code = await asyncio.to_thread(server.wait, settings.shutdown_timeout + 30)
                exited = time.monotonic() - sigterm
        left = await admin.service_backends()

    failed = [a for a in answers if not a.ok]
    figure = (
        f"{in_flight} requests in flight at SIGTERM: {load.summary(answers)}; exit code {code} "
        f"{exited:.2f} s after SIGTERM (drain {settings.drain_seconds:g} s, "
        f"grace {settings.shutdown_timeout:g} s); {left} backends left"
    )
    assert in_flight == 100, figure
    assert failed == [], figure
    assert code == 0, figure
    # Every request answered (above) means each was served within the grace: uvicorn cancels what is left
    # when it ends. What follows is closing the pool and the interpreter's exit, 10 s of room for a loaded
    # machine; a shutdown that waited for something else would reach `server.wait`'s bound instead.
    assert exited <= settings.drain_seconds + settings.shutdown_timeout + 10, figure
    assert left == 0, figure
    print(figure)


async def _count(awaitable, expected: int) -> bool:
    return bool(await awaitable >= expected)


async def _pool_waiting(c: httpx2.AsyncClient, expected: int) -> bool:
    """Whether ``expected`` requests wait for a pooled connection (``datasvc_db_pool_waiting``)."""
    text = (await c.get("/metrics")).text
    lines = [line for line in text.splitlines() if line.startswith("datasvc_db_pool_waiting")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines) == expected


async def _refused(base_url: str) -> bool:
    """Whether the server no longer accepts connections."""
    host, port = base_url.removeprefix("http://").rsplit(":", 1)
    try:
        _, writer = await asyncio.open_connection(host, int(port))
    except ConnectionRefusedError:
        return True
    writer.close()
    await writer.wait_closed()
    return False
