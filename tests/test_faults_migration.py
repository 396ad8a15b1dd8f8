"""Issue 5.9: a migration applied under load costs no request, and no statement depends on `*`."""

from __future__ import annotations

import asyncio
import functools
import re
import shutil
import time
from pathlib import Path

import pytest

from datasvc import migrations
from datasvc.db import Database
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT, Settings
from tests.support import load
from tests.support.servers import ThreadServer
from tests.support.values import HASH
from tests.support.waits import until

_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.S)
# `SELECT *`, `RETURNING *`, `users.*`: a column added later would change what the statement returns.
# (`alias.*` over a sub-select that names its columns is fine: its shape is fixed by the SQL.)
_STAR = re.compile(r"\b(select|returning)\s+(distinct\s+)?\*|\busers\s*\.\s*\*", re.I)

NEW_MIGRATION = """\
-- Add a nullable column: catalog-only, but ALTER TABLE needs ACCESS EXCLUSIVE for an instant.
-- depends: {depends}

-- Never queue behind a long transaction (and every request behind us): give up and retry later.
SET lock_timeout = '1s';

ALTER TABLE users ADD COLUMN nickname text;
"""


@pytest.mark.parametrize("path", sorted((PROJECT_ROOT / "sql").rglob("*.sql")), ids=lambda p: p.name)
def test_no_statement_selects_or_returns_star(path: Path):
    code = _COMMENTS.sub(" ", path.read_text())
    assert _STAR.search(code) is None, f"{path}: name the columns; `*` changes shape when a column is added"


@pytest.mark.parametrize("path", sorted((PROJECT_ROOT / "migrations").glob("*.sql")), ids=lambda p: p.name)
def test_every_migration_sets_a_lock_timeout(path: Path):
    assert "lock_timeout" in path.read_text(), f"{path}: SET lock_timeout so it cannot queue every request"


def _with_extra_migration(tmp_path: Path) -> Path:
    folder = tmp_path / "migrations"
    shutil.copytree(PROJECT_ROOT / "migrations", folder)
    last = migrations.local_ids(folder)[-1]
    (folder / "9001.add-nickname.sql").write_text(NEW_MIGRATION.format(depends=last))
    (folder / "9001.add-nickname.rollback.sql").write_text(
        "-- Drop the column again.\nSET lock_timeout = '1s';\n\nALTER TABLE users DROP COLUMN nickname;\n"
    )
    return folder


@pytest.mark.slow
async def test_migration_applied_under_load_costs_no_request(settings: Settings, database_url, tmp_path):
    folder = _with_extra_migration(tmp_path)
    with ThreadServer(settings.with_overrides(pool_min_size=4, pool_max_size=4)) as server:
        async with load.client(server.base_url) as c:
            seed = await c.post("/api/v1/users", json=load.unique_user("seed"))
            uid = seed.json()["id"]
            read = functools.partial(load.read_user, user_id=uid)

            async def patch(client):
                return await load.call(client, "write", "PATCH", f"/api/v1/users/{uid}", json={"bio": "x"})

            log, stop = load.Log(), asyncio.Event()
            driver = asyncio.create_task(
                load.steady(c, log, stop, (read, load.create_user, patch), workers=6)
            )
            await until(lambda: sum(a.ok for a in log.answers) >= 30, what="the load served normally")
            began = time.monotonic()
            applied = await asyncio.to_thread(migrations.apply, database_url, folder)
            took = time.monotonic() - began
            done = began + took
            # Requests begun after the migration, against the changed schema, on every connection.
            await until(lambda: len(log.between(done, float("inf"))) >= 30, what="30 answers after it")
            stop.set()
            await driver
    state = migrations.status(database_url, folder)
    figure = f"migration took {took * 1000:.0f} ms under load; requests {load.summary(log.answers)}"
    assert applied == ["9001.add-nickname"], applied
    assert state.pending == []
    assert log.between(began, began + took), figure  # requests really ran while it was applied
    assert [a for a in log.answers if not a.ok] == [], figure
    print(figure)


async def test_a_cached_plan_made_stale_by_a_migration_is_retried(settings: Settings, database_url):
    # What would happen to a `SELECT *`: the column list changes under a cached prepared statement.
    db = await Database.connect(settings.with_overrides(pool_min_size=1, pool_max_size=1), load.TEST_SQL)
    try:
        user = await load_user(database_url)
        before = await db.run("faults.select_star", user)
        in_tx_before = await db.transaction(lambda tx: tx.run("faults.select_star", user))
        async with load.admin(database_url) as admin:
            await admin.run("faults.add_column")
        # Outside a transaction asyncpg re-prepares by itself; inside one, PostgreSQL aborts the
        # transaction (0A000 "cached plan must not change result type") and `transaction` reruns it.
        in_tx_after = await db.transaction(lambda tx: tx.run("faults.select_star", user))
        after = await db.run("faults.select_star", user)
    finally:
        await db.close()
    assert "nickname" not in before
    assert "nickname" not in in_tx_before
    assert "nickname" in in_tx_after
    assert "nickname" in after


async def load_user(database_url: str) -> int:
    db_settings = Settings(database_url=database_url, pool_min_size=1, pool_max_size=1)
    db = await Database.connect(db_settings, Registry.load(PROJECT_ROOT / "sql"))
    try:
        row = await db.run("users.create", "s@example.io", "starry", HASH, None, None)
    finally:
        await db.close()
    uid: int = row["id"]
    return uid
