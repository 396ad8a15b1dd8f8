"""Issue 5.8: serialization failures and deadlocks are retried a bounded number of times, then 503."""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import pytest

from datasvc.db import Database, Transaction
from datasvc.dberrors import translate
from datasvc.errors import ServiceUnavailable
from datasvc.registry import Registry
from datasvc.statements import execute
from tests.support import load
from tests.support.values import HASH

TOUCH = load.TEST_SQL["faults.touch_user"]
READ_ALL = load.TEST_SQL["faults.bio_sum"]


@pytest.fixture
async def db(settings):
    database = await Database.connect(settings, Registry.load(settings.sql_dir))
    try:
        yield database
    finally:
        await database.close()


async def _two_users(db: Database) -> tuple[int, int]:
    a = await db.run("users.create", "a@example.io", "user_a", HASH, None, None)
    b = await db.run("users.create", "b@example.io", "user_b", HASH, None, None)
    return a["id"], b["id"]


async def _collide(db: Database, kind: str) -> tuple[list[object], Counter[str]]:
    """Two transactions that PostgreSQL cannot both commit on their first attempt."""
    first, second = await _two_users(db)
    attempts: Counter[str] = Counter()
    meet = asyncio.Barrier(2)
    finished = {"a": asyncio.Event(), "b": asyncio.Event()}

    def worker(name: str, other: str, mine: int, theirs: int):
        async def work(tx: Transaction) -> str:
            attempts[name] += 1
            if attempts[name] > 1:
                # A retry waits for the winner to finish: on a loaded machine the retry's jittered pause
                # (under 20 ms) can end before the winner commits, and the two collide again (CI saw a
                # serializable loser run four times). The retry itself is what this test is about.
                await finished[other].wait()
            if kind == "deadlock":
                # Row locks taken in opposite orders: the deadlock detector aborts one of the two.
                await execute(tx.conn, TOUCH, (mine, name))
                if attempts[name] == 1:
                    await meet.wait()
                await execute(tx.conn, TOUCH, (theirs, name))
            else:
                # Write skew: each reads what the other writes. SERIALIZABLE lets only one commit.
                await execute(tx.conn, READ_ALL, ())
                if attempts[name] == 1:
                    await meet.wait()
                await execute(tx.conn, TOUCH, (mine, name))
            return name

        return work

    isolation = "read_committed" if kind == "deadlock" else "serializable"

    async def run(name: str, other: str, mine: int, theirs: int) -> str:
        try:
            return await db.transaction(worker(name, other, mine, theirs), isolation=isolation)
        finally:
            finished[name].set()

    results = await asyncio.gather(
        run("a", "b", first, second), run("b", "a", second, first), return_exceptions=True
    )
    return list(results), attempts


@pytest.mark.parametrize("kind", ["deadlock", "serialization"])
@pytest.mark.pooler
async def test_rolled_back_transaction_is_retried_and_both_commit(db, kind, target):
    results, attempts = await _collide(db, kind)
    figure = f"{kind} ({target}): results {results}, attempts {dict(attempts)}"
    assert sorted(map(str, results)) == ["a", "b"], figure
    if target == "direct" or kind == "deadlock":
        assert sum(attempts.values()) == 3, figure  # exactly one of the two ran twice
    else:
        # Behind a pooler's extra hop on a loaded machine the retried serializable one can start before
        # the winner has committed and collide once more (seen: a=3, b=1), which is the retry doing its
        # job: both must still commit.
        assert sum(attempts.values()) >= 3, figure
    print(figure)


@pytest.mark.parametrize("kind", ["deadlock", "serialization"])
@pytest.mark.pooler(kind="serialization")
async def test_retries_exhausted_is_503_with_retry_after(settings, kind):
    db = await Database.connect(
        settings.with_overrides(transaction_retries=0), Registry.load(settings.sql_dir)
    )
    try:
        results, attempts = await _collide(db, kind)
    finally:
        await db.close()
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1, results
    assert isinstance(failures[0], asyncpg.exceptions.TransactionRollbackError), repr(failures[0])
    problem = translate(failures[0])
    assert isinstance(problem, ServiceUnavailable), problem
    assert problem.headers() == {"Retry-After": "1"}
    assert sum(attempts.values()) == 2
