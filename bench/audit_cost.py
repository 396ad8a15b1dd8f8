"""What the audit trail (migrations 0015, 0016) costs a write: create and PATCH, triggers off and on.

    .venv/bin/python -m bench.audit_cost postgresql://postgres@127.0.0.1:5432/<database> [N] [CONCURRENCY]
    .venv/bin/python -m bench.audit_cost postgresql://… [N] [CONCURRENCY] http   # through the service

With ``http`` the same windows are POST /api/v1/users and PATCH /api/v1/users/{id} sent to `datasvc serve`
(one worker, on BENCH_PORT_BASE + 2) by CONCURRENCY clients of this process: requests per second, and the
backend CPU of every server process of the database per request.

Sends the registry's own statements (`users.create`, `users.update` with a one-field patch, as the
service sends them, each its own transaction) in windows of N statements per connection over CONCURRENCY
connections, with the three audit triggers disabled and enabled, ROUNDS times (env, default 3), in one
run, alternating which state goes first, after a round of warm-up that is not counted. It reports per
window the statements per second (wall clock: commits included, so what the audit row adds to WAL and
flushes shows) and the backend CPU per statement (utime + stime from /proc: what a write costs the
database, which on a shared machine is steadier than its wall time), and the median over the rounds of
each round's ratio on/off (a round's two windows run next to each other, so a change in the machine's
load between rounds cancels out). Rows it inserted are deleted with the triggers in the state they were
inserted with.

It runs ALTER TABLE ... DISABLE TRIGGER: a superuser or the owner, on a database of its own (a write by
anyone else while the triggers are off would not be recorded). It reads /proc: the server must run on
this machine. The database must be migrated and hold users (ids 1..M are patched, spread).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import tempfile
import time

import asyncpg

from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT

TRIGGERS = ("users_changes_created", "users_changes_updated", "users_changes_deleted")
TICKS = os.sysconf("SC_CLK_TCK")
HASH = "$2b$12$" + "a" * 53


def _cpu_of(pids: list[int]) -> dict[int, float]:
    """CPU seconds of each of ``pids`` still running."""
    out = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except FileNotFoundError:
            continue
    return out


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def window(
    conns: list[asyncpg.Connection],
    pids: list[int],
    what: str,
    tag: str,
    n: int,
    top: tuple[int, int],
    registry: Registry,
) -> tuple[float, float]:
    """Statements per second and backend CPU µs per statement of one window."""
    create, update = registry["users.create"].text, registry["users.update"].text

    async def one(k: int, conn: asyncpg.Connection) -> None:
        for i in range(n):
            if what == "create":
                await conn.fetchrow(create, f"{tag}{k}_{i}@x.example", f"{tag}{k}_{i}", HASH, None, None)
            else:
                await conn.fetchrow(
                    update, top[0] + (k * n + i) * 7919 % top[1], f'{{"bio": "{tag}{i}"}}', None
                )

    before = sum(cpu_seconds(p) for p in pids)
    started = time.perf_counter()
    await asyncio.gather(*(one(k, c) for k, c in enumerate(conns)))
    elapsed = time.perf_counter() - started
    total = n * len(conns)
    return total / elapsed, (sum(cpu_seconds(p) for p in pids) - before) / total * 1e6


async def http_window(
    base: str, url: str, what: str, tag: str, n: int, top: tuple[int, int], concurrency: int
) -> tuple[float, float]:
    """Requests per second and the database's backend CPU µs per request of one window through the service."""
    import httpx2

    async def pids() -> list[int]:
        conn = await asyncpg.connect(url)
        try:
            rows = await conn.fetch("SELECT pid FROM pg_stat_activity WHERE datname = current_database()")
            return [r["pid"] for r in rows]
        finally:
            await conn.close()

    async def one(k: int, client: httpx2.AsyncClient) -> None:
        for i in range(n):
            if what == "create":
                body = {
                    "email": f"{tag}{k}_{i}@x.example",
                    "username": f"{tag}{k}_{i}",
                    "hashed_password": HASH,
                }
                response = await client.post("/api/v1/users", json=body)
            else:
                user = top[0] + (k * n + i) * 7919 % top[1]
                response = await client.patch(f"/api/v1/users/{user}", json={"bio": f"{tag}{i}"})
            assert response.status_code in (200, 201), response.text

    before = _cpu_of(await pids())
    async with httpx2.AsyncClient(base_url=base, timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(one(k, client) for k in range(concurrency)))
        elapsed = time.perf_counter() - started
    total = n * concurrency
    after = _cpu_of(list(before))
    spent = sum(after[p] - before[p] for p in after)  # the processes there before and after
    return total / elapsed, spent / total * 1e6


async def main(url: str, n: int, concurrency: int, base: str | None = None) -> None:
    registry = Registry.load(PROJECT_ROOT / "sql")
    admin = await asyncpg.connect(url)
    conns = [await asyncpg.connect(url) for _ in range(concurrency)]
    pids = [await c.fetchval("SELECT pg_backend_pid()") for c in conns]
    # The users loaded first (ids without gaps): those the windows patch.
    low = await admin.fetchval("SELECT min(id) FROM users")
    high = low + await admin.fetchval("SELECT count(*) FROM users WHERE id - $1 < 100000", low) - 1
    assert low, "the users table is empty: load rows first"
    top = (low, high - low + 1)  # the users patched: ids low .. high (the windows' own are deleted)
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    stamp = int(time.time()) % 100000  # this run's rows, apart from any a failed run left
    rounds = int(os.environ.get("ROUNDS", "3"))
    try:
        # Round -1 warms up (caches, the service's first requests): not counted.
        for round_ in range(-1, rounds):
            states = (
                ("ENABLE",)
                if round_ < 0
                else ("DISABLE", "ENABLE")
                if round_ % 2 == 0
                else ("ENABLE", "DISABLE")
            )
            for state in states:
                for name in TRIGGERS:
                    await admin.execute(f"ALTER TABLE users {state} TRIGGER {name}")  # names from TRIGGERS
                tag = f"ac{stamp}r{round_ + 1}{state[0].lower()}"
                for what in ("create", "patch"):
                    if base is None:
                        measured = await window(conns, pids, what, tag, n, top, registry)
                    else:
                        measured = await http_window(base, url, what, tag, n, top, concurrency)
                    if round_ >= 0:
                        results.setdefault((what, state), []).append(measured)
                await admin.execute("DELETE FROM users WHERE email LIKE $1", f"{tag}%@x.example")
    finally:
        for name in TRIGGERS:
            await admin.execute(f"ALTER TABLE users ENABLE TRIGGER {name}")
        for c in (admin, *conns):
            await c.close()
    for what in ("create", "patch"):
        off, on = results[(what, "DISABLE")], results[(what, "ENABLE")]
        rate = statistics.median(b[0] / a[0] for a, b in zip(off, on, strict=True))
        cpu = statistics.median(b[1] / a[1] for a, b in zip(off, on, strict=True))
        print(
            f"{what:6s} statements/s off {' / '.join(f'{r:.0f}' for r, _ in off)}, "
            f"on {' / '.join(f'{r:.0f}' for r, _ in on)}: on/off median {rate:.3f}; "
            f"backend CPU µs/statement off {' / '.join(f'{c:.0f}' for _, c in off)}, "
            f"on {' / '.join(f'{c:.0f}' for _, c in on)}: on/off median {cpu:.3f}"
        )


def run() -> None:
    url = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 500
    concurrency = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    if len(sys.argv) > 4 and sys.argv[4] == "http":
        from pathlib import Path

        from bench.services import datasvc, running

        port = int(os.environ.get("BENCH_PORT_BASE", "8100")) + 2
        svc = datasvc("datasvc-audit", port=port, workers=1, database_url=url, n=0, access_log=True)
        with running(svc, Path(tempfile.mkdtemp(prefix="audit-cost-")) / "datasvc.log"):
            asyncio.run(main(url, n, concurrency, svc.url))
    else:
        asyncio.run(main(url, n, concurrency))


if __name__ == "__main__":
    run()
