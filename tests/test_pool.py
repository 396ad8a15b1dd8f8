"""The connection owner (`datasvc.pool`): arrival order, hand-over, same caller first, a share per caller,
parking, expiry and close.

Real connections to the test database throughout: a request "holds" a connection by sitting inside
`Database.connection` until the test lets it go, and the others queue behind it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import asyncpg
import pytest

from datasvc import parking as parking_module
from datasvc import pool as pool_module
from datasvc.connections import reusable
from datasvc.context import Timing, request_caller, request_timing
from datasvc.db import Database
from datasvc.dberrors import CONNECTION_LOST
from datasvc.errors import ShuttingDown
from datasvc.pool import Pool
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT, Settings
from datasvc.waitlist import MAX_PASSED
from tests.support.waits import until

REGISTRY = Registry.load(PROJECT_ROOT / "sql")


async def _raw(settings: Settings) -> Pool:
    return await Pool.open(
        "primary",
        settings.with_overrides(pool_min_size=1, pool_max_size=1),
        registry=REGISTRY,
        min_size=1,
    )


@pytest.fixture
async def raw(settings: Settings) -> AsyncIterator[Pool]:
    """A `Pool` of one connection used directly, without `Database`."""
    pool = await _raw(settings)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Database]:
    """A service pool of one connection: every other request queues for it."""
    database = await Database.connect(settings.with_overrides(pool_min_size=1, pool_max_size=1), REGISTRY)
    try:
        yield database
    finally:
        await database.close()


class Requests:
    """Requests that take a connection in turn; ``served`` records who got one, in order, and its name."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.served: list[str] = []
        self.pids: dict[str, int] = {}
        self.renamed: list[str] = []

    def start(self, label: str, caller: str | None, hold: asyncio.Event | None = None) -> asyncio.Task[None]:
        return asyncio.create_task(self._one(label, caller, hold))

    async def _one(self, label: str, caller: str | None, hold: asyncio.Event | None) -> None:
        request_caller.set(caller)  # this task's own context
        timing = Timing()
        request_timing.set(timing)
        async with self.db.connection() as conn:
            self.served.append(label)
            self.pids[label] = conn.get_server_pid()
            if timing.statements:  # `Pool.acquire` ran `session.set_application_name`
                self.renamed.append(label)
            if hold is not None:
                await hold.wait()

    async def queue(self, *waiters: tuple[str, str | None]) -> list[asyncio.Task[None]]:
        """Start ``waiters`` one after the other, each queued before the next arrives."""
        tasks = []
        pool = self.db.primary
        for label, caller in waiters:
            before = pool.waiting
            tasks.append(self.start(label, caller))
            await until(lambda before=before: pool.waiting == before + 1, what=f"{label} queued")  # type: ignore[misc]
        return tasks


async def _holding(
    requests: Requests, label: str, caller: str | None
) -> tuple[asyncio.Task[None], asyncio.Event]:
    hold = asyncio.Event()
    task = requests.start(label, caller, hold)
    await until(lambda: label in requests.served, what=f"{label} holds the connection")
    return task, hold


async def test_waiters_are_served_in_arrival_order_and_latecomers_queue_behind(db: Database) -> None:
    requests = Requests(db)
    holder, hold = await _holding(requests, "holder", None)
    waiters = await requests.queue(*((f"w{i}", None) for i in range(8)))
    hold.set()
    # Arriving as the connection is handed on: asyncpg's own queue would let it take the connection first.
    late = requests.start("late", None)
    await asyncio.gather(holder, *waiters, late)
    assert requests.served == ["holder", *(f"w{i}" for i in range(8)), "late"]
    # Handed straight over: every request ran on the one connection, none was opened meanwhile.
    assert len(set(requests.pids.values())) == 1


async def test_a_connection_goes_to_a_waiter_of_its_caller_first(db: Database) -> None:
    requests = Requests(db)
    holder, hold = await _holding(requests, "a0", "alice")
    waiters = await requests.queue(("b1", "bob"), ("b2", "bob"), ("a1", "alice"))
    hold.set()
    await asyncio.gather(holder, *waiters)
    # alice's connection went to alice's request (no rename), then to bob's in arrival order.
    assert requests.served == ["a0", "a1", "b1", "b2"]
    assert requests.renamed == ["a0", "b1"]  # a0 named the fresh connection; b1 renamed it once for bob


async def test_the_head_of_the_queue_is_passed_over_a_bounded_number_of_times(db: Database) -> None:
    requests = Requests(db)
    holder, hold = await _holding(requests, "a0", "alice")
    alices = [(f"a{i}", "alice") for i in range(1, MAX_PASSED + 3)]
    waiters = await requests.queue(("b1", "bob"), *alices)
    hold.set()
    await asyncio.gather(holder, *waiters)
    overtaking = [label for label, _ in alices[:MAX_PASSED]]
    rest = [label for label, _ in alices[MAX_PASSED:]]
    assert requests.served == ["a0", *overtaking, "b1", *rest]


async def test_a_connection_in_a_transaction_goes_back_to_the_pool_not_to_the_next_request(
    db: Database,
) -> None:
    hold = asyncio.Event()
    seen: list[bool] = []

    async def leaves_a_transaction_open() -> None:
        async with db.connection() as conn:
            await conn.execute("BEGIN")  # a bug we must survive: asyncpg's release rolls it back
            await hold.wait()

    async def next_request() -> None:
        async with db.connection() as conn:
            seen.append(conn.is_in_transaction())

    first = asyncio.create_task(leaves_a_transaction_open())
    await until(lambda: db.primary.free == 0, what="the connection is taken")
    second = asyncio.create_task(next_request())
    await until(lambda: db.primary.waiting == 1, what="the next request queued")
    hold.set()
    await asyncio.gather(first, second)
    assert seen == [False]


async def test_after_a_lost_connection_no_sibling_taken_before_is_handed_over(settings: Settings) -> None:
    db = await Database.connect(settings.with_overrides(pool_min_size=2, pool_max_size=2), REGISTRY)
    try:
        requests = Requests(db)
        sibling, hold_sibling = await _holding(requests, "sibling", None)
        doomed_hold = asyncio.Event()

        async def doomed() -> None:
            async with db.connection() as conn:
                await doomed_hold.wait()
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")

        lost = asyncio.create_task(doomed())
        await until(lambda: db.primary.free == 0, what="both connections taken")
        hold_waiter = asyncio.Event()
        waiter = requests.start("waiter", None, hold_waiter)
        await until(lambda: db.primary.waiting == 1, what="the waiter queued")
        doomed_hold.set()
        with pytest.raises(CONNECTION_LOST):
            await lost  # its connection died: the pool is expired
        # The dead connection's place went to the waiter, which got a fresh connection from the pool.
        await until(lambda: "waiter" in requests.served, what="the waiter served")
        (second,) = await requests.queue(("second", None))
        hold_sibling.set()
        await until(lambda: "second" in requests.served, what="the second served")
        hold_waiter.set()
        await asyncio.gather(sibling, waiter, second)
        # The sibling was taken before the pool was expired: back to the pool (which replaces it), not
        # straight to the next request.
        assert requests.pids["second"] != requests.pids["sibling"]
    finally:
        await db.close()


async def test_a_connection_handed_to_a_cancelled_waiter_is_passed_on(raw: Pool) -> None:
    conn = await raw.acquire()
    first = asyncio.create_task(raw.acquire())
    second = asyncio.create_task(raw.acquire())
    await until(lambda: raw.waiting == 2, what="two waiters")
    await raw.release(conn)  # handed to `first`...
    first.cancel()  # ... which is cancelled before it runs (its client left, its acquire timed out)
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second is conn

    third = asyncio.create_task(raw.acquire())
    await until(lambda: raw.waiting == 1, what="a third waiter")
    await raw.release(conn)
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    # Nobody else waits: the connection is parked (back in the pool after PARK_SECONDS), the place free.
    assert (raw.parked, raw.free, raw.waiting) == (1, 1, 0)


@pytest.mark.perf  # a share of renames: how the event loop interleaves the callers, which load changes
async def test_callers_in_turn_rarely_rename_a_connection(settings: Settings) -> None:
    """Four callers in turn, 32 requests at a time on a pool of 4 (the benchmark's shape, scaled down)."""
    db = await Database.connect(settings.with_overrides(pool_min_size=4, pool_max_size=4), REGISTRY)
    renamed = 0
    try:

        async def lookup(caller: str) -> int:
            request_caller.set(caller)
            timing = Timing()
            request_timing.set(timing)
            await db.run("users.get_by_id", 1)
            return timing.statements - 1

        callers = [f"caller{i % 4}" for i in range(32)]
        for _ in range(20):
            renamed += sum(await asyncio.gather(*(lookup(c) for c in callers)))
    finally:
        await db.close()
    assert renamed < 640 * 0.3, f"{renamed} of 640 requests renamed their connection"


async def test_a_waiter_cancelled_while_queued_is_skipped_before_its_task_runs(raw: Pool) -> None:
    """The race `test_faults_timeouts` found: an acquire timer cancels a queued request (its future is
    cancelled at once, its task removes it from the queue only when it next runs) and a connection is
    released in between: it must go to the next waiter, and a place given back must not be lost."""
    conn = await raw.acquire()
    timed_out, patient = asyncio.create_task(raw.acquire()), asyncio.create_task(raw.acquire())
    await until(lambda: raw.waiting == 2, what="two waiters")
    timed_out.cancel()  # cancels the future it waits on now; the task runs later
    await raw.release(conn)
    assert await asyncio.wait_for(patient, 10) is conn
    with pytest.raises(asyncio.CancelledError):
        await timed_out

    late, later = asyncio.create_task(raw.acquire()), asyncio.create_task(raw.acquire())
    await until(lambda: raw.waiting == 2, what="two more waiters")
    late.cancel()
    # A connection that cannot be passed on (it is in a transaction): its place goes to `later`, which
    # takes a connection from asyncpg's pool.
    await conn.execute("BEGIN")
    await raw.release(conn)
    fresh = await asyncio.wait_for(later, 10)
    assert not fresh.is_in_transaction()
    with pytest.raises(asyncio.CancelledError):
        await late
    assert raw.waiting == 0
    await raw.release(fresh)


async def test_a_connection_goes_back_to_the_pool_after_max_uses(
    raw: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under constant load a connection would never return to asyncpg's pool (which recycles it)."""
    monkeypatch.setattr(pool_module, "MAX_USES", 2)
    conn = await raw.acquire()
    waiters = [asyncio.create_task(raw.acquire()) for _ in range(3)]
    await until(lambda: raw.waiting == 3, what="three waiters")
    received = []
    for waiter in waiters:
        await raw.release(conn)
        received.append(await asyncio.wait_for(waiter, 10))
        conn = received[-1]
    # Twice straight over; the third time back to the pool, where the third waiter took it.
    assert [c is received[0] for c in received] == [True, True, False]
    await raw.release(conn)


async def test_a_connection_nobody_waits_for_is_parked_for_the_next_request(db: Database) -> None:
    """Not back through asyncpg's pool (a task and a turn of the loop each way): kept here."""
    pool = db.primary
    requests = Requests(db)
    await requests.start("first", None)
    assert (pool.parked, pool.stats().idle, pool.free) == (1, 1, 1)  # the metrics count it idle
    _, hold = await _holding(requests, "second", None)
    assert requests.pids["second"] == requests.pids["first"]
    assert (pool.parked, pool.free) == (0, 0)
    hold.set()


async def test_a_parked_connection_goes_back_to_the_pool_after_a_while(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Idle, it belongs to the pool: asyncpg's idle timeout and close() see it there."""
    monkeypatch.setattr(parking_module, "PARK_SECONDS", 0.05)
    pool = db.primary
    await Requests(db).start("first", None)  # parked at first (the test above)
    # Back in asyncpg's pool: idle there, no longer parked here; its place free.
    await until(lambda: (pool.parked, pool.stats().idle, pool.free) == (0, 1, 1), what="back in the pool")


async def test_a_parked_connection_whose_server_died_is_not_handed_out(
    db: Database, database_url: str
) -> None:
    requests = Requests(db)
    await requests.start("first", None)
    (parked,) = db.primary.parking.connections()
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", requests.pids["first"])
    finally:
        await admin.close()
    await until(lambda: not reusable(parked), what="asyncpg sees the connection closed")
    await requests.start("second", None)
    assert requests.pids["second"] != requests.pids["first"]


async def test_after_a_lost_connection_the_parked_go_back_to_the_pool(settings: Settings) -> None:
    db = await Database.connect(settings.with_overrides(pool_min_size=2, pool_max_size=2), REGISTRY)
    try:
        requests = Requests(db)
        first, hold_first = await _holding(requests, "first", None)
        await requests.start("parked", None)
        hold_first.set()
        await first
        assert db.primary.parked == 2
        with pytest.raises(CONNECTION_LOST):
            async with db.connection() as conn:  # one of the two; the other stays parked
                await conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        # The pool was expired: the connection still parked went back to it, to be replaced.
        assert db.primary.parked == 0
        await requests.start("after", None)
        assert requests.pids["after"] not in (requests.pids["first"], requests.pids["parked"])
    finally:
        await db.close()


async def test_closing_returns_the_parked_connections_first(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """asyncpg's close waits for every connection taken from the pool: a parked one must go back first."""
    db = await Database.connect(settings.with_overrides(pool_min_size=1, pool_max_size=1), REGISTRY)
    await Requests(db).start("first", None)
    assert db.primary.parked == 1
    with caplog.at_level(logging.WARNING, logger="datasvc.pool"):
        await db.close()
    assert "pool did not close in time" not in caplog.text
    assert db.primary.stats().size == 0


async def test_a_closed_pool_refuses_acquires_and_its_waiters_are_told(raw: Pool) -> None:
    conn = await raw.acquire()
    waiter = asyncio.create_task(raw.acquire())
    await until(lambda: raw.waiting == 1, what="a waiter")
    closing = asyncio.create_task(raw.close())
    with pytest.raises(ShuttingDown):
        await waiter
    with pytest.raises(ShuttingDown, match="closed"):
        await raw.acquire()
    await raw.release(conn)  # asyncpg's close waits for it, within the shutdown bound
    await asyncio.wait_for(closing, 10)
    assert raw.stats().size == 0


async def test_close_is_bounded_by_the_shutdown_timeout(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A connection never given back (a request stuck) does not hold the shutdown: it is terminated."""
    pool = await _raw(settings.with_overrides(shutdown_timeout=0.2))
    await pool.acquire()
    with caplog.at_level(logging.WARNING, logger="datasvc.pool"):
        await asyncio.wait_for(pool.close(), 10)
    assert "pool did not close in time" in caplog.text
    assert pool.stats().size == 0


async def test_a_caller_holding_all_connections_but_one_waits_while_another_caller_is_served(
    settings: Settings,
) -> None:
    """The share per caller (`waitlist.RESERVE`): counted in connections held, whatever statements cost."""
    db = await Database.connect(settings.with_overrides(pool_min_size=3, pool_max_size=3), REGISTRY)
    try:
        requests = Requests(db)
        held = [await _holding(requests, f"heavy{i}", "heavy") for i in range(2)]
        (third,) = await requests.queue(("heavy2", "heavy"))  # a free connection, but heavy's share is held
        assert db.primary.free == 1
        _, hold_light = await _holding(requests, "light", "light")  # served at once, by the free one
        assert requests.served == ["heavy0", "heavy1", "light"]
        held[0][1].set()
        await until(lambda: "heavy2" in requests.served, what="heavy's next request served")
        hold_light.set()
        held[1][1].set()
        await asyncio.gather(third, *(task for task, _ in held))
    finally:
        await db.close()
