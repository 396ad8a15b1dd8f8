"""The plan gate: hot statements are EXPLAINed against 100k users and must use the index their header names.

Each statement's ``-- expect-plan:`` header states the expected access path; this test is its proof. The
keyset page statements have their own plan tests next to the listing (tests/users/test_listing.py).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pytest_postgresql.janitor import DatabaseJanitor

from datasvc import migrations
from datasvc.explain import explain_json, node_types
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT
from datasvc.sqlfiles import Statement
from tests.support.pgserver import server as _server
from tests.support.pgserver import url_for

ROWS = 100_000
KEYS = 20_000
MIGRATIONS = PROJECT_ROOT / "migrations"
REGISTRY = Registry.load(PROJECT_ROOT / "sql")
SEED = Registry.load(Path(__file__).parent / "sql" / "plans")  # only ours: tests/sql/faults is not

HOT: list[tuple[str, dict[str, str]]] = [
    ("users.get_by_id", {"id": "54321"}),
    ("users.get_by_username", {"username": "user_54321"}),
    ("users.get_by_email", {"email": "USER.54321@example.COM"}),
    ("auth.lookup", {"login": "user_54321"}),
    ("auth.lookup", {"login": "User.54321@EXAMPLE.com"}),
]


@pytest.fixture(scope="module")
def seeded_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database with ROWS users, shared by this module's read-only tests.

    The rows go in after the first migration only; the later ones then build their indexes over the
    loaded table, which is several times faster than maintaining them (the GIN ones above all) row by row.
    """
    name = f"datasvc_plans_{os.getpid()}"
    first = tmp_path_factory.mktemp("first_migration")
    for path in sorted(MIGRATIONS.glob(f"{migrations.local_ids(MIGRATIONS)[0]}*.sql")):
        shutil.copy(path, first)
    with DatabaseJanitor(dbname=name, **_server()):  # type: ignore[arg-type]
        url = url_for(name)
        migrations.apply(url, first)

        asyncio.run(_execute(url, SEED["seed.users"], ROWS))
        migrations.apply(url, MIGRATIONS)
        asyncio.run(_execute(url, SEED["seed.keys"], KEYS))
        asyncio.run(_execute(url, SEED["seed.analyze"]))
        yield url


async def _execute(url: str, stmt: Statement, *args: Any) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(stmt.text, *args)
    finally:
        await conn.close()


def _plan(url: str, stmt: Statement, params: dict[str, str]) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        conn = await asyncpg.connect(url)
        try:
            return await explain_json(conn, stmt, params)
        finally:
            await conn.close()

    return asyncio.run(run())


def expected_path(header: str) -> tuple[str, list[list[str]]]:
    """From a ``-- expect-plan:`` header: the node type, and the indexes it names as groups of alternatives.

    ``BitmapOr of (a_key or b_idx) and c_key`` → ``("BitmapOr", [["a_key", "b_idx"], ["c_key"]])``.
    """
    node = re.split(r"\s+(?:using|of|on)\s+|\s*\(", header, maxsplit=1)[0].strip()
    groups = [re.findall(r"\b\w+_(?:pkey|key|idx)\b", part) for part in re.split(r"\band\b", header)]
    return node, [g for g in groups if g]


def gate(stmt: Statement, plan: dict[str, Any]) -> list[str]:
    """Why ``plan`` fails the gate (empty: it passes): a Seq Scan, or not the path the header promises."""
    nodes = node_types(plan)
    problems = [f"sequential scan: {n}" for n in nodes if n.startswith("Seq Scan")]
    node, groups = expected_path(stmt.plan)
    if not any(n.split(" using ")[0].split(" on ")[0] == node for n in nodes):
        problems.append(f"header expects a {node} node")
    used = {n.split(" using ")[1].split(" on ")[0] for n in nodes if " using " in n}
    problems += [f"header expects index {' or '.join(g)}" for g in groups if not used.intersection(g)]
    return problems


@pytest.mark.parametrize(("name", "params"), HOT, ids=[f"{n}-{next(iter(p.values()))}" for n, p in HOT])
def test_hot_statement_uses_the_index_its_header_names(seeded_url, name, params):
    stmt = REGISTRY[name]
    assert stmt.plan, f"{name} has no -- expect-plan: header"
    plan = _plan(seeded_url, stmt, params)
    assert gate(stmt, plan) == [], f"{name}: {node_types(plan)}"
    assert plan["Plan"]["Actual Rows"] == 1  # it ran (ANALYZE) and found the one row
    assert plan["Plan"]["Shared Hit Blocks"] + plan["Plan"].get("Shared Read Blocks", 0) < 20


# The batchGet statements (POST /api/v1/users:batchGet): 100 keys, one of them matching no user.
_IDS = [54321 + 7 * i for i in range(99)] + [-1]
BATCHES: list[tuple[str, dict[str, str]]] = [
    ("users.batch_get_by_id", {"ids": ",".join(map(str, _IDS))}),
    ("users.batch_get_by_username", {"usernames": ",".join(f"user_{i}" for i in _IDS)}),
    ("users.batch_get_by_email", {"emails": ",".join(f"USER.{i}@example.COM" for i in _IDS)}),
]


@pytest.mark.parametrize(("name", "params"), BATCHES, ids=[n for n, _ in BATCHES])
def test_batch_statement_probes_the_index_its_header_names_once_per_key(seeded_url, name, params):
    stmt = REGISTRY[name]
    plan = _plan(seeded_url, stmt, params)
    assert gate(stmt, plan) == [], f"{name}: {node_types(plan)}"
    assert plan["Plan"]["Actual Rows"] == 99
    # A probe per key reads a few index pages and one heap page: nowhere near the table's thousands.
    assert plan["Plan"]["Shared Hit Blocks"] + plan["Plan"].get("Shared Read Blocks", 0) < 100 * 8


# The writes: batchCreate, the keyed writes (a key never used, and one used already), and the statements
# that read and purge the keys. EXPLAIN ANALYZE runs each in a transaction that is rolled back.
_HASH = "x" * 60
_FINGERPRINT = "ab" * 32
_NEW = [200_001 + i for i in range(100)]
_KEYED = {"scope": "caller_1", "fingerprint": _FINGERPRINT, "ttl_seconds": "86400"}
WRITES: list[tuple[str, str, dict[str, str]]] = [
    (
        "users.batch_create",
        "100 new users",
        {
            "emails": ",".join(f"new.{i}@example.com" for i in _NEW),
            "usernames": ",".join(f"new_{i}" for i in _NEW),
            "hashed_passwords": ",".join(_HASH for _ in _NEW),
            "full_names": ",".join(f"New {i}" for i in _NEW),
            "bios": ",".join("" for _ in _NEW),
            **_KEYED,
            "key": "key-new",
        },
    ),
    (
        "users.create_keyed",
        "new key",
        {
            "email": "new@example.com",
            "username": "new_user",
            "hashed_password": _HASH,
            "full_name": "New",
            "bio": "",
            **_KEYED,
            "key": "key-new",
        },
    ),
    (
        "users.create_keyed",
        "known key",
        {
            "email": "new@example.com",
            "username": "new_user",
            "hashed_password": _HASH,
            "full_name": "New",
            "bio": "",
            **_KEYED,
            "key": "key-1",
        },
    ),
    (
        "users.update_keyed",
        "new key",
        {"id": "54321", "patch": '{"full_name": "Changed"}', "versions": "1", **_KEYED, "key": "key-new"},
    ),
    ("users.delete_keyed", "new key", {"id": "54321", "versions": "1", **_KEYED, "key": "key-new"}),
    ("users.delete_keyed", "known key", {"id": "54321", "versions": "1", **_KEYED, "key": "key-1"}),
    ("idempotency.get", "known key", {"scope": "caller_1", "key": "key-1"}),
    ("idempotency.purge", "expired keys", {"batch": "500"}),
]


@pytest.mark.parametrize(("name", "case", "params"), WRITES, ids=[f"{n}-{c}" for n, c, _ in WRITES])
def test_write_statement_takes_the_path_its_header_names(seeded_url, name, case, params):
    stmt = REGISTRY[name]
    assert stmt.plan, f"{name} has no -- expect-plan: header"
    plan = _plan(seeded_url, stmt, params)
    assert gate(stmt, plan) == [], f"{name}: {node_types(plan)}"


def test_a_write_is_named_as_the_text_plan_names_it(seeded_url):
    """EXPLAIN's JSON calls every write ``ModifyTable``; the gate reads ``Insert on users``, as text does."""
    plan = _plan(seeded_url, REGISTRY["users.create_keyed"], WRITES[1][2])
    assert "Insert on users" in node_types(plan)
    assert "Insert on idempotency_keys" in node_types(plan)
    assert not [n for n in node_types(plan) if n.startswith("ModifyTable")]


def test_the_gate_fails_a_statement_without_an_index(seeded_url, tmp_path):
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "by_bio.sql").write_text(
        "-- name: by_bio :many\n-- Users with a given bio: no index on bio.\n-- params: bio\n"
        "-- expect-plan: Index Scan using users_pkey on users\nSELECT id FROM users WHERE bio = $1\n"
    )
    stmt = Registry.load(tmp_path)["users.by_bio"]
    problems = gate(stmt, _plan(seeded_url, stmt, {"bio": "nobody"}))
    assert any(p.startswith("sequential scan") for p in problems)
    assert "header expects index users_pkey" in problems


def test_the_gate_fails_a_plan_other_than_the_header_promises(seeded_url, tmp_path):
    (tmp_path / "users").mkdir()
    (tmp_path / "users" / "by_name.sql").write_text(
        "-- name: by_name :one\n-- Says email, uses username.\n-- params: username\n"
        "-- expect-plan: Index Scan using users_email_caseless_key on users\n"
        "SELECT id, email FROM users WHERE username = $1\n"
    )
    stmt = Registry.load(tmp_path)["users.by_name"]
    assert gate(stmt, _plan(seeded_url, stmt, {"username": "user_7"})) == [
        "header expects index users_email_caseless_key"
    ]


def test_the_seed_is_large_enough(seeded_url):
    async def count() -> int:
        conn = await asyncpg.connect(seeded_url)
        try:
            return int(await conn.fetchval(SEED["seed.count"].text))
        finally:
            await conn.close()

    assert asyncio.run(count()) >= 100_000
