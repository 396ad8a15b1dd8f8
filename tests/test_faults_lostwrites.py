"""Issue 5.6: no acknowledged write is lost, none is duplicated, none is torn, whatever kills the service.

A writer with unique keys logs every 201. The service is killed with SIGKILL at random moments and
restarted, over and over; then every acknowledged key must be in the table exactly once and whole.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from dataclasses import dataclass, field

import httpx2
import pytest

from datasvc.settings import Settings
from tests import load
from tests.liveserver import LiveServer

pytestmark = pytest.mark.slow

CYCLES = 20


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
        "hashed_password": load.HASH,
        "full_name": key,
        "bio": key * 8,
    }


async def write_until_dead(base_url: str, ledger: Ledger, cycle: int, workers: int = 8) -> int:
    """Closed-loop writers until the service stops answering; returns how many requests were sent."""
    sent = 0

    async def worker(w: int, c: httpx2.AsyncClient) -> None:
        nonlocal sent
        for n in itertools.count():
            key = f"k{cycle}_{w}_{n}"
            sent += 1
            try:
                r = await c.post("/api/v1/users", json=_body(key))
            except httpx2.HTTPError:
                ledger.unknown.add(key)
                return
            if r.status_code == 201:
                ledger.acknowledged.add(key)
            else:
                ledger.refused[r.status_code] = ledger.refused.get(r.status_code, 0) + 1

    async with load.client(base_url, timeout=5) as c:
        await asyncio.gather(*(worker(w, c) for w in range(workers)))
    return sent


async def test_kill_9_at_random_moments_loses_no_acknowledged_write(
    settings: Settings, database_url, tmp_path
):
    rng = random.Random(5)  # reproducible kill moments
    server = LiveServer(settings.with_overrides(pool_min_size=1, pool_max_size=4), tmp_path / "serve.log")
    ledger = Ledger()
    started = time.monotonic()
    sent = 0
    try:
        for cycle in range(CYCLES):
            await asyncio.to_thread(server.start)
            writing = asyncio.create_task(write_until_dead(server.base_url, ledger, cycle))
            await asyncio.sleep(rng.uniform(0.05, 0.4))
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
    assert len(ledger.acknowledged) > 100, figure
    assert missing == set(), figure
    assert counts["duplicated"] == 0, figure
    assert counts["damaged"] == 0, figure
    # Every row is one the writer sent: acknowledged, or sent when the service died.
    assert present <= ledger.acknowledged | ledger.unknown, figure
    assert ledger.refused == {}, figure
    print(figure)
