"""One process of the two-process wrong-statement check: runs one statement many times, counts outcomes.

``python -m tests.support.statement_worker URL STATEMENT USER_ID COUNT CACHE_SIZE`` opens an asyncpg pool
(4 connections, asyncpg's statement cache of CACHE_SIZE), prints ``ready``, waits for a line on stdin so
that both processes start together, runs STATEMENT (``pooler.select_marked`` or ``pooler.update_marked``)
COUNT times from 8 tasks, and prints one JSON line: how many results were its own statement's (``own``),
how many another's (``foreign``: the other process's statement ran under this one's name) and how many
failed (``errors``, by exception class). asyncpg names statements ``__asyncpg_stmt_<n>__`` from a counter
per process, so two processes use the same names: a pooler that passes names through mixes them up.
"""

from __future__ import annotations

import asyncio
import sys
from collections import Counter

import asyncpg
import orjson

from tests.support.load import TEST_SQL

TASKS = 8


async def main(url: str, statement: str, user_id: int, count: int, cache_size: int) -> dict[str, object]:
    stmt = TEST_SQL[statement]
    own = "select" if statement == "pooler.select_marked" else "update"
    outcomes: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    pool = await asyncpg.create_pool(url, min_size=4, max_size=4, statement_cache_size=cache_size)
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    remaining = iter(range(count))

    async def task() -> None:
        for _ in remaining:
            try:
                row = await pool.fetchrow(stmt.text, user_id)
            except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                errors[type(exc).__name__] += 1
                continue
            outcomes["own" if row is not None and row["did"] == own else "foreign"] += 1

    await asyncio.gather(*(task() for _ in range(TASKS)))
    await pool.close()
    return {"own": outcomes["own"], "foreign": outcomes["foreign"], "errors": dict(errors)}


if __name__ == "__main__":
    url, statement, user_id, count, cache_size = sys.argv[1:6]
    result = asyncio.run(main(url, statement, int(user_id), int(count), int(cache_size)))
    print(orjson.dumps(result).decode(), flush=True)
