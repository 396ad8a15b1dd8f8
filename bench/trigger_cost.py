"""What the counts triggers (migration 0009) cost a write: backend CPU per statement, triggers off and on.

    .venv/bin/python -m bench.trigger_cost postgresql://postgres@127.0.0.1:5432/datasvc_bench [N]

One connection sends N single-row INSERTs, N status flips (an UPDATE that moves a user to another
combination, so the row trigger fires) and N full_name UPDATEs (it does not), each in its own transaction
as the service sends them (so the fold of one transaction in 256 is included), with the three counts
triggers disabled, then enabled, three times; every flipped user is flipped back by the next window.
It reports the server process's CPU time (utime + stime
from /proc) per statement: CPU, not wall time, because on a shared machine the wall time of a window
depends on everyone else, while what a write costs the database does not. Rows it inserted are deleted
with the triggers in the state they were inserted with, and the counts are rebuilt from the table at
the end, so they are exact again afterwards.

It runs ALTER TABLE ... DISABLE TRIGGER: a superuser or the owner, on a benchmark database only (a
write by anyone else while the triggers are off would not be counted). It reads /proc: the server must
run on this machine.
"""

from __future__ import annotations

import os
import sys

import psycopg

TRIGGERS = ("users_counts_inserted", "users_counts_deleted", "users_counts_moved")
TICKS = os.sysconf("SC_CLK_TCK")
INSERT = "INSERT INTO users (email, username, hashed_password) VALUES (%s, %s, %s)"
FLIP = "UPDATE users SET status = CASE WHEN status = 'active' THEN 'inactive' ELSE 'active' END WHERE id = %s"
RENAME = "UPDATE users SET full_name = full_name WHERE id = %s"  # a write that moves no user


# The windows with the triggers off wrote no deltas (their flips were undone by later ones, counted):
# count again from the table, with writers kept out meanwhile.
RECOUNT = """
    BEGIN;
    LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM users_counts;
    INSERT INTO users_counts (status, is_verified, is_admin, n)
    SELECT status, is_verified, is_admin, count(*) FROM users GROUP BY status, is_verified, is_admin;
    COMMIT;
"""


WHAT = ("insert", "status flip", "full_name")


def _statement(what: str, tag: str, i: int, top: int) -> tuple[str, tuple[object, ...]]:
    if what == "insert":
        return INSERT, (f"{tag}{i}@x.example", f"{tag}_{i}", "a" * 60)
    if what == "status flip":
        return FLIP, (1 + i * 7919 % top,)
    return RENAME, (1 + i * 104729 % top,)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def set_triggers(admin: psycopg.Connection, state: str) -> None:
    for name in TRIGGERS:
        admin.execute(f"ALTER TABLE users {state} TRIGGER {name}")  # names from the closed tuple above


def main(url: str, n: int) -> None:
    results: dict[tuple[str, str], list[float]] = {}
    with psycopg.connect(url, autocommit=True) as admin, psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_backend_pid(), (SELECT max(id) FROM users)").fetchone()
        assert row is not None
        assert row[1], "the users table is empty: load the benchmark's rows first"
        pid, top = row
        try:
            for round_ in range(3):
                for state in ("DISABLE", "ENABLE"):
                    set_triggers(admin, state)
                    tag = f"tc{round_}{state[0].lower()}"
                    for what in WHAT:
                        before = cpu_seconds(pid)
                        for i in range(n):
                            conn.execute(*_statement(what, tag, i, top))
                        results.setdefault((what, state), []).append((cpu_seconds(pid) - before) / n * 1e6)
                    conn.execute("DELETE FROM users WHERE email LIKE %s", (f"{tag}%@x.example",))
        finally:
            set_triggers(admin, "ENABLE")
            admin.execute(RECOUNT)
    for what in WHAT:
        off, on = results[(what, "DISABLE")], results[(what, "ENABLE")]
        print(
            f"{what:12s} backend CPU µs/statement: triggers off {' / '.join(f'{v:.0f}' for v in off)}, "
            f"on {' / '.join(f'{v:.0f}' for v in on)}; mean +{sum(on) / 3 - sum(off) / 3:.0f} µs"
        )


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 3000)
