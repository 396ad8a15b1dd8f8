"""Issue 5.6: no acknowledged write is lost, none is duplicated, none is torn, whatever kills the service.

A writer with unique keys logs every 201. The service is killed with SIGKILL at random moments and
restarted, over and over; then every acknowledged key must be in the table exactly once and whole.
The same holds when PostgreSQL itself crashes (``pg_ctl stop -m immediate``) on a cluster the test owns.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field

import httpx2
import pytest

from datasvc import migrations
from datasvc.settings import PROJECT_ROOT, Settings
from tests.support import load
from tests.support.cluster import Cluster
from tests.support.servers import ProcessServer
from tests.support.values import HASH
from tests.support.waits import until

pytestmark = pytest.mark.slow

CYCLES = 20
# Each cycle kills the service only once it has acknowledged a random number of writes (up to this many),
# then after a random moment more: the test does as much work on a loaded machine as on a quiet one.
MOST_PER_CYCLE = 10


@dataclass
class Ledger:
    acknowledged: set[str] = field(default_factory=set)
    unknown: set[str] = field(default_factory=set)  # no answer: the write may or may not have happened
    refused: dict[int, int] = field(default_factory=dict)


def _body(key: str) -> dict[str, str]:
    # full_name repeats the key (no unique constraint: a duplicate would show), bio is derived from it
    # (a torn row would show).
    return {
        "email": f"{key}@example.io",
        "username": key,
        "hashed_password": HASH,
        "full_name": key,
        "bio": key * 8,
    }


async def write(base_url: str, ledger: Ledger, prefix: str, stop: asyncio.Event | None = None) -> int:
    """Eight closed-loop writers; returns how many requests were sent.

    Without ``stop`` each writer ends at its first unanswered request (the service died). With it they
    write through errors until ``stop`` is set (the database died, the service did not); then a 5xx
    may come from a commit the crash cut off, so it counts as unknown, not as refused-and-absent.
    """
    sent = 0

    async def worker(w: int, c: httpx2.AsyncClient) -> None:
        nonlocal sent
        for n in itertools.count():
            if stop is not None and stop.is_set():
                return
            key = f"{prefix}_{w}_{n}"
            sent += 1
            try:
                r = await c.post("/api/v1/users", json=_body(key))
            except httpx2.HTTPError:
                ledger.unknown.add(key)
                if stop is None:
                    return
                continue
            if r.status_code == 201:
                ledger.acknowledged.add(key)
                continue
            ledger.refused[r.status_code] = ledger.refused.get(r.status_code, 0) + 1
            if r.status_code >= 500:
                ledger.unknown.add(key)
                await asyncio.sleep(0.01)

    async with load.client(base_url, timeout=5) as c:
        await asyncio.gather(*(worker(w, c) for w in range(8)))
    return sent


async def test_kill_9_at_random_moments_loses_no_acknowledged_write(
    settings: Settings, database_url, tmp_path
):
    rng = random.Random(5)  # reproducible kill moments
    server = ProcessServer(settings.with_overrides(pool_min_size=1, pool_max_size=4), tmp_path / "serve.log")
    ledger = Ledger()
    started = time.monotonic()
    sent = required = 0
    try:
        for cycle in range(CYCLES):
            await asyncio.to_thread(server.start)
            writing = asyncio.create_task(write(server.base_url, ledger, f"k{cycle}"))
            required += rng.randint(1, MOST_PER_CYCLE)
            await until(lambda: len(ledger.acknowledged) >= required, timeout=60, what="writes acknowledged")  # noqa: B023
            await asyncio.sleep(rng.uniform(0.0, 0.2))  # the kill's moment: mid-write, at random
            await asyncio.to_thread(server.kill)
            sent += await writing
    finally:
        await asyncio.to_thread(server.kill)
    elapsed = time.monotonic() - started

    async with load.admin(database_url) as admin:
        present = {r["username"] for r in await admin.run("faults.usernames")}
        counts = await admin.run("faults.row_counts")
    missing = ledger.acknowledged - present
    unknown_committed = len(ledger.unknown & present)
    figure = (
        f"{CYCLES} kill -9 cycles in {elapsed:.1f} s: {sent} writes sent, "
        f"{len(ledger.acknowledged)} acknowledged, {len(ledger.unknown)} unanswered "
        f"({unknown_committed} of them committed), refused {ledger.refused}; "
        f"acknowledged but missing {len(missing)}, rows {counts['total']}, "
        f"duplicated {counts['duplicated']}, damaged {counts['damaged']}"
    )
    assert len(ledger.acknowledged) >= required, figure
    assert missing == set(), figure
    assert counts["duplicated"] == 0, figure
    assert counts["damaged"] == 0, figure
    # Every row is one the writer sent: acknowledged, or sent when the service died.
    assert present <= ledger.acknowledged | ledger.unknown, figure
    assert ledger.refused == {}, figure
    print(figure)


async def test_postgres_crash_immediate_loses_no_acknowledged_write(settings: Settings, tmp_path):
    cluster = Cluster()
    try:
        await asyncio.to_thread(cluster.init)
        await asyncio.to_thread(cluster.start)
        await asyncio.to_thread(migrations.apply, cluster.url, PROJECT_ROOT / "migrations")
        service = settings.with_overrides(
            database_url=cluster.url,
            pool_min_size=1,
            pool_max_size=4,
            acquire_timeout=0.5,
            connect_timeout=0.5,
        )
        ledger, stop = Ledger(), asyncio.Event()
        with ProcessServer(service, tmp_path / "serve.log") as server:
            writing = asyncio.create_task(write(server.base_url, ledger, "c", stop))
            await until(lambda: len(ledger.acknowledged) >= 20, timeout=60, what="writes before the crash")
            acknowledged_before = len(ledger.acknowledged)
            failed_before = len(ledger.unknown)
            await asyncio.to_thread(cluster.stop, "immediate")  # no checkpoint, no clean shutdown
            # Down until the writers have met it: several writes cut off or refused by the crash.
            await until(lambda: len(ledger.unknown) >= failed_before + 8, timeout=60, what="writes failing")
            await asyncio.to_thread(cluster.start)  # crash recovery replays the WAL
            after_crash = len(ledger.acknowledged)
            await until(
                lambda: len(ledger.acknowledged) >= after_crash + 20, timeout=60, what="writes resumed"
            )
            stop.set()
            sent = await writing
        async with load.admin(cluster.url) as admin:
            present = {r["username"] for r in await admin.run("faults.usernames")}
            counts = await admin.run("faults.row_counts")
    finally:
        await asyncio.to_thread(cluster.remove)

    missing = ledger.acknowledged - present
    figure = (
        f"pg_ctl stop -m immediate under {sent} writes: {len(ledger.acknowledged)} acknowledged "
        f"({acknowledged_before} before the crash), {len(ledger.unknown)} not acknowledged "
        f"({len(ledger.unknown & present)} of them committed), answers {ledger.refused}; "
        f"acknowledged but missing {len(missing)}, duplicated {counts['duplicated']}, "
        f"damaged {counts['damaged']}"
    )
    assert acknowledged_before > 0, figure
    assert len(ledger.acknowledged) > acknowledged_before, figure  # writes resumed after recovery
    assert missing == set(), figure
    assert counts["duplicated"] == 0, figure
    assert counts["damaged"] == 0, figure
    assert present <= ledger.acknowledged | ledger.unknown, figure
    assert set(ledger.refused) <= {503}, figure
    print(figure)
