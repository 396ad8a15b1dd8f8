"""Tools for the fault tests: a steady HTTP load that records every answer, and an admin connection.

The admin connection runs the test-only statements in ``tests/sql/`` (pg_stat_activity, locks,
pg_terminate_backend) through the same registry format as the service: no SQL in Python strings.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import orjson

from datasvc.registry import Registry
from datasvc.statements import execute
from tests.support.values import HASH

TEST_SQL = Registry.load(Path(__file__).parents[1] / "sql")
PROBLEM = "application/problem+json"
ADMIN_NAME = "faulttest-admin"
_keys = itertools.count()


class Admin:
    """A connection of the test's own, named `ADMIN_NAME` so the backend queries leave it out."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    async def run(self, name: str, *args: Any) -> Any:
        return await execute(self.conn, TEST_SQL[name], args)

    async def service_backends(self) -> int:
        """Pooled connections the service holds open to this test's database (not its LISTEN one)."""
        n: int = await self.run("faults.count", ADMIN_NAME)
        return n

    async def busy(self) -> list[Any]:
        """The service's backends that are not idle (running, waiting, in a transaction)."""
        rows: list[Any] = await self.run("faults.busy", ADMIN_NAME)
        return rows


@asynccontextmanager
async def admin(database_url: str) -> AsyncIterator[Admin]:
    conn = await asyncpg.connect(database_url, server_settings={"application_name": ADMIN_NAME})
    try:
        yield Admin(conn)
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class Answer:
    """One request as the caller saw it; ``status`` 0 means no HTTP answer at all (connection error)."""

    kind: str
    started: float
    seconds: float
    status: int
    content_type: str = ""
    retry_after: str | None = None
    slug: str = ""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    @property
    def is_503_problem(self) -> bool:
        return self.status == 503 and self.content_type == PROBLEM and self.retry_after is not None


@dataclass
class Log:
    answers: list[Answer] = field(default_factory=list)

    def between(self, start: float, end: float) -> list[Answer]:
        return [a for a in self.answers if start <= a.started < end]


def unique_user(prefix: str = "u") -> dict[str, str]:
    key = f"{prefix}{next(_keys)}_{time.monotonic_ns() % 10**9}"
    return {"email": f"{key}@example.io", "username": key, "hashed_password": HASH}


async def call(client: httpx2.AsyncClient, kind: str, method: str, url: str, **kw: Any) -> Answer:
    started = time.monotonic()
    try:
        r = await client.request(method, url, **kw)
    except httpx2.HTTPError:
        return Answer(kind, started, time.monotonic() - started, 0)
    slug = ""
    if r.headers.get("content-type") == PROBLEM:
        slug = str(r.json().get("type", "")).rpartition(":")[2]
    return Answer(
        kind,
        started,
        time.monotonic() - started,
        r.status_code,
        r.headers.get("content-type", ""),
        r.headers.get("retry-after"),
        slug,
    )


Request = Callable[[httpx2.AsyncClient], Awaitable[Answer]]


async def read_user(client: httpx2.AsyncClient, user_id: int = 1) -> Answer:
    return await call(client, "read", "GET", f"/api/v1/users/{user_id}")


async def create_user(client: httpx2.AsyncClient) -> Answer:
    return await call(client, "write", "POST", "/api/v1/users", json=unique_user())


async def steady(
    client: httpx2.AsyncClient,
    log: Log,
    stop: asyncio.Event,
    requests: Sequence[Request] = (read_user, create_user),
    *,
    workers: int = 4,
    pause: float = 0.0,
) -> None:
    """``workers`` closed-loop callers cycling through ``requests`` until ``stop`` is set."""

    async def worker(offset: int) -> None:
        for i in itertools.count(offset):
            if stop.is_set():
                return
            log.answers.append(await requests[i % len(requests)](client))
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(worker(n) for n in range(workers)))


def client(base_url: str, *, connections: int = 100, timeout: float = 10.0) -> httpx2.AsyncClient:
    limits = httpx2.Limits(max_connections=connections, max_keepalive_connections=connections)
    return httpx2.AsyncClient(base_url=base_url, timeout=timeout, limits=limits)


def p(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) in milliseconds, 0 for no values."""
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0] * 1000
    return statistics.quantiles(values, n=100, method="inclusive")[min(98, max(0, round(q * 100) - 1))] * 1000


def summary(answers: Sequence[Answer]) -> str:
    by_status: dict[int, int] = {}
    for a in answers:
        by_status[a.status] = by_status.get(a.status, 0) + 1
    secs = [a.seconds for a in answers]
    return (
        f"n={len(answers)} statuses={dict(sorted(by_status.items()))} "
        f"p50={p(secs, 0.5):.1f}ms p99={p(secs, 0.99):.1f}ms max={max(secs, default=0) * 1000:.1f}ms"
    )


async def hammer(
    base_url: str,
    path: str,
    *,
    workers: int,
    seconds: float,
    honour_retry_after: bool = False,
    token: str | None = None,
    interval: float = 0.0,
    stop: asyncio.Event | None = None,
) -> list[Answer]:
    """Closed-loop GETs over raw keep-alive sockets: a client light enough to overload the server.

    httpx spends more CPU per request than the service does, so on a small machine it cannot push the
    service past its limit; this loop writes a fixed request and reads status, headers and body.
    ``honour_retry_after``: a caller that got ``Retry-After`` waits that long, as well-behaved ones do.
    ``token``: sent as ``Authorization: Bearer <token>``. ``interval``: each worker starts a request at
    most every ``interval`` seconds, a steady rate (0: the next as soon as the answer is in). ``stop``:
    set, the workers finish the request in hand and end before ``seconds`` are up.
    """
    host, _, port = base_url.removeprefix("http://").partition(":")
    auth = f"Authorization: Bearer {token}\r\n" if token else ""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}\r\n".encode()
    answers: list[Answer] = []
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while time.monotonic() < deadline and not (stop is not None and stop.is_set()):
                started = time.monotonic()
                writer.write(request)
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
                headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                slug = ""
                if headers.get("content-type") == PROBLEM:
                    slug = str(orjson.loads(body).get("type", "")).rpartition(":")[2]
                answers.append(
                    Answer(
                        "read",
                        started,
                        time.monotonic() - started,
                        int(head[9:12]),
                        headers.get("content-type", ""),
                        headers.get("retry-after"),
                        slug,
                    )
                )
                if honour_retry_after and "retry-after" in headers:
                    await asyncio.sleep(float(headers["retry-after"]))
                elif interval:
                    await asyncio.sleep(max(0.0, started + interval - time.monotonic()))
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(workers)))
    return answers
