"""The users counts table (migration 0009) is exact in every snapshot, whoever writes and however.

Writers run as the service's role in transactions of several statements, some rolled back, while folds
run beside them; a REPEATABLE READ reader compares, again and again, every total the listing can ask for
(each subset of status, is_verified and is_admin: GROUP BY CUBE) from the counts table with count(*) of
users in the same snapshot.
"""

from __future__ import annotations

import random
import threading
from typing import Any

import psycopg
import pytest

from tests.support.pgserver import APP_ROLE, as_role
from tests.support.values import HASH

# One counted column at a time (each must move the counts on its own), and one that is not counted.
MOVES = (
    ("status", ("active", "inactive", "suspended")),
    ("is_verified", (True, False)),
    ("is_admin", (True, False)),
    ("full_name", ("Ann", None)),
)
WRITERS = 4
TRANSACTIONS = 120  # per writer: ~2-4 s on a quiet machine, enough for dozens of checks and folds

COUNTED = """
    SELECT status, is_verified, is_admin, count(*) FROM users
    GROUP BY CUBE (status, is_verified, is_admin)
"""
FROM_COUNTS = """
    SELECT status, is_verified, is_admin, sum(n)::bigint FROM users_counts
    GROUP BY CUBE (status, is_verified, is_admin) HAVING sum(n) <> 0
"""


def _totals(conn: psycopg.Connection[Any], sql: str) -> dict[tuple[Any, ...], int]:
    return {tuple(row[:3]): row[3] for row in conn.execute(sql)}


def _value(conn: psycopg.Connection[Any], sql: str) -> Any:
    row = conn.execute(sql).fetchone()
    assert row is not None
    return row[0]


def _seed(url: str, n: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (email, username, hashed_password, status, is_verified, is_admin) "
            "SELECT 's' || i || '@example.com', 'seed_' || i, %s, (ARRAY['active', 'inactive', "
            "'suspended'])[1 + i %% 3], i %% 2 = 0, i %% 5 = 0 FROM generate_series(1, %s) AS i",
            (HASH, n),
        )


def _write(app_url: str, seed: int, outcome: dict[str, int]) -> None:
    """TRANSACTIONS transactions of 1-4 random inserts, moves and deletes; a third rolled back."""
    rng = random.Random(seed)
    with psycopg.connect(app_url) as conn:
        for t in range(TRANSACTIONS):
            try:
                for s in range(rng.randint(1, 4)):
                    op = rng.choice(("insert", "insert", "move", "move", "delete"))
                    if op == "insert":
                        conn.execute(
                            "INSERT INTO users (email, username, hashed_password) "
                            "SELECT %(tag)s || i || '@example.com', %(tag)s || i, %(hash)s "
                            "FROM generate_series(1, %(n)s) AS i",
                            {"tag": f"w{seed}_{t}_{s}_", "hash": HASH, "n": rng.randint(1, 3)},
                        )
                    elif op == "move":
                        column, values = rng.choice(MOVES)
                        conn.execute(
                            f"UPDATE users SET {column} = %s "
                            "WHERE id IN (SELECT id FROM users ORDER BY random() LIMIT %s)",
                            (rng.choice(values), rng.randint(1, 3)),
                        )
                    else:
                        conn.execute(
                            "DELETE FROM users WHERE id IN (SELECT id FROM users ORDER BY random() LIMIT 1)"
                        )
                if rng.random() < 1 / 3:
                    conn.rollback()
                    outcome["rolled_back"] += 1
                else:
                    conn.commit()
                    outcome["committed"] += 1
            except (psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure):
                conn.rollback()  # two writers took the same rows in opposite orders: a rollback like any
                outcome["rolled_back"] += 1


def test_totals_equal_count_in_every_snapshot_under_concurrent_writes_and_folds(database_url):
    _seed(database_url, 300)
    app_url = as_role(database_url, APP_ROLE)
    done = threading.Event()
    mismatches: list[tuple[dict[Any, int], dict[Any, int]]] = []
    checks = folds = 0
    outcome = {"committed": 0, "rolled_back": 0}

    def check() -> None:
        nonlocal checks
        with psycopg.connect(app_url) as conn:
            conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            while True:
                finished = done.is_set()  # one more check after the last write
                counted = _totals(conn, COUNTED)  # the first query takes the snapshot ...
                kept = _totals(conn, FROM_COUNTS)  # ... the second reads the same one
                conn.rollback()
                checks += 1
                if counted != kept:
                    mismatches.append((counted, kept))
                if finished:
                    return

    def fold() -> None:
        nonlocal folds
        with psycopg.connect(database_url, autocommit=True) as conn:  # the owner: the service may not
            while not done.is_set():
                conn.execute("SELECT users_counts_compact()")
                folds += 1

    writers = [threading.Thread(target=_write, args=(app_url, seed, outcome)) for seed in range(WRITERS)]
    helpers = [threading.Thread(target=check), threading.Thread(target=fold)]
    for thread in helpers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in helpers:
        thread.join()

    assert outcome["committed"] > 0, outcome
    assert outcome["rolled_back"] > 0, outcome
    assert checks > 1, checks
    assert folds > 1, folds
    assert mismatches == [], f"{len(mismatches)} of {checks} snapshots disagree; first: {mismatches[0]}"


def test_the_writes_fold_the_deltas_now_and_then(database_url):
    """One write transaction in 256 folds; the table never grows past a few hundred rows."""
    app_url = as_role(database_url, APP_ROLE)
    with psycopg.connect(app_url, autocommit=True) as conn:
        peak = 0
        for i in range(5000):  # ~256 expected; 5,000 misses a fold with odds far below 1e-6
            conn.execute(
                "INSERT INTO users (email, username, hashed_password) VALUES (%s, %s, %s)",
                (f"f{i}@example.com", f"fold_{i}", HASH),
            )
            rows = _value(conn, "SELECT count(*) FROM users_counts")
            if rows < peak:
                break
            peak = rows
        else:
            pytest.fail("5,000 write transactions and no fold")
        assert _value(conn, "SELECT sum(n) FROM users_counts") == i + 1


def test_truncate_empties_the_counts(database_url):
    _seed(database_url, 10)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE users")
        assert _value(conn, "SELECT count(*) FROM users_counts") == 0


@pytest.mark.parametrize(
    "sql",
    [
        pytest.param("INSERT INTO users_counts VALUES ('active', false, false, 1000)", id="insert-delta"),
        pytest.param("DELETE FROM users_counts", id="delete"),
        pytest.param("SELECT users_counts_compact()", id="fold"),
        pytest.param("SELECT users_counts_moved()", id="trigger-function"),
    ],
)
def test_the_service_role_can_read_the_counts_but_not_write_them(database_url, sql):
    with psycopg.connect(as_role(database_url, APP_ROLE), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM users_counts").fetchone() is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(sql)
