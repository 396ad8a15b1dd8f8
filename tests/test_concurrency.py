"""Concurrent writers against a real server: unique keys hold, and If-Match loses no update silently."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Iterable
from typing import TypeVar

import asyncpg
import httpx2
import pytest

from tests.support.servers import ThreadServer
from tests.support.values import HASH

T = TypeVar("T")


@pytest.fixture
def base_url(settings):
    with ThreadServer(settings) as server:
        yield server.base_url


async def _all(coroutines: Iterable[Awaitable[T]]) -> list[T]:
    return list(await asyncio.gather(*coroutines))


@pytest.mark.pooler
def test_fifty_concurrent_creates_of_one_username_make_one_row(base_url, database_url):
    async def run() -> list[httpx2.Response]:
        async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:
            return await _all(
                client.post(
                    "/api/v1/users",
                    json={"email": f"same{i}@example.org", "username": "same", "hashed_password": HASH},
                )
                for i in range(50)
            )

    responses = asyncio.run(run())
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 1, 409: 49}, f"statuses: {dict(statuses)}"
    conflicts = [r.json() for r in responses if r.status_code == 409]
    assert {c["field"] for c in conflicts} == {"username"}

    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM users WHERE username = 'same'"))
        finally:
            await conn.close()

    assert asyncio.run(count()) == 1


@pytest.mark.pooler
def test_concurrent_patches_with_if_match_exactly_one_wins_per_version(base_url):
    """Twenty writers race per round, all holding the same ETag: one 200, nineteen 412, over ten rounds."""
    writers, rounds = 20, 10

    async def run() -> tuple[list[Counter[int]], list[str], str | None]:
        async with httpx2.AsyncClient(base_url=base_url, timeout=30) as client:
            created = await client.post(
                "/api/v1/users",
                json={"email": "race@example.org", "username": "race", "hashed_password": HASH},
            )
            assert created.status_code == 201, created.text
            path = created.headers["location"]
            tag = created.headers["etag"]
            tallies, winners = [], []
            for round_no in range(rounds):
                responses = await _all(
                    client.patch(path, json={"bio": f"r{round_no}-w{w}"}, headers={"If-Match": tag})
                    for w in range(writers)
                )
                tallies.append(Counter(r.status_code for r in responses))
                won = [r for r in responses if r.status_code == 200]
                if len(won) != 1:
                    break
                winners.append(won[0].json()["bio"])
                tag = won[0].headers["etag"]
            final = await client.get(path)
            return tallies, winners, final.json()["bio"]

    tallies, winners, final_bio = asyncio.run(run())
    assert tallies == [Counter({200: 1, 412: writers - 1})] * rounds, f"per round: {tallies}"
    # The last acknowledged write is what the row holds: no write was lost or applied behind a 412.
    assert final_bio == winners[-1]
