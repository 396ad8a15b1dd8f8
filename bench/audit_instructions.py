"""What the audit trail costs a write in the database, in instructions (callgrind).

    python -m bench.audit_instructions [N] [ROWS]      # as root (runs PostgreSQL as the postgres user)

Wall-clock ratios of two windows (bench/audit_cost.py) move by more than the trail costs on a shared
machine; instruction counts do not. This builds a private cluster of its own (initdb in a temporary
directory, this checkout's migrations, ROWS users from bench/seed.sql, default 100,000), stops it and
keeps its data directory as a snapshot. Then, for the registry's ``users.create`` and ``users.update``
(a one-field PATCH of bio, as the service sends them, PREPAREd), with the audit trigger disabled and
enabled: a fresh copy of the snapshot, PostgreSQL in single-user mode under callgrind with
instrumentation off, CHECKPOINT, 30 statements of warm-up, instrumentation on for N statements (default
256), off. Each statement is its own transaction: N = 256 holds exactly one fold of the counts (migration
0009 folds in one write transaction in 256). Same snapshot, same statements, same transaction ids: the
only difference between off and on is the trigger (repeat runs agree within 0.1 %). Prints the
instructions per statement and the ratio on/off.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT

BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
PORT = int(os.environ.get("AUDIT_PG_PORT", "5498"))  # the private cluster's, while it is built
DATABASE = "datasvc_audit_instructions"
HASH = "$2b$12$" + "a" * 53
WARM = 30
TRIGGERS = {"create": "users_changes_created", "patch": "users_changes_updated"}


def as_postgres(argv: list[str], quiet: bool = False) -> None:
    """PostgreSQL refuses to run as root: its programs run as the postgres user."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    subprocess.run([*prefix, *argv], check=True, capture_output=quiet)


def valgrind_pid(pid: int) -> str:
    """The process callgrind instruments: ``pid``, or under runuser its child (valgrind execs postgres)."""
    if os.geteuid() != 0:
        return str(pid)
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 1, children
    return children[0]


def one_line(text: str) -> str:
    """A registry statement as one line: single-user mode ends a command at the end of its line."""
    return " ".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))


def build(root: Path, rows: int) -> Path:
    """The snapshot: a stopped cluster, migrated and loaded."""
    data = root / "snapshot"
    as_postgres([str(BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"], quiet=True)
    options = f"-p {PORT} -k {root} -c listen_addresses=127.0.0.1"
    as_postgres(
        [str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"],
        quiet=True,
    )
    try:
        url = f"postgresql://postgres@127.0.0.1:{PORT}/{DATABASE}"
        psql = ["psql", "-q", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]
        subprocess.run([*psql, "-c", f"CREATE DATABASE {DATABASE}"], check=True)
        env = {**os.environ, "DATABASE_URL": url}
        subprocess.run(
            [sys.executable, "-m", "datasvc", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL
        )
        seed = str(PROJECT_ROOT / "bench" / "seed.sql")
        subprocess.run(
            [*psql, "-d", DATABASE, "-v", f"n={rows}", "-f", seed], check=True, stdout=subprocess.DEVNULL
        )
        subprocess.run([*psql, "-d", DATABASE, "-c", "VACUUM ANALYZE"], check=True)
    finally:
        as_postgres([str(BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], quiet=True)
    return data


def measure(root: Path, snapshot: Path, what: str, state: str, n: int, statements: dict[str, str]) -> float:
    """Instructions per statement of N writes ``what`` with the trigger in ``state``, from a fresh copy."""
    data = root / "data"
    shutil.rmtree(data, ignore_errors=True)
    subprocess.run(["cp", "-a", str(snapshot), str(data)], check=True)  # owner and modes kept
    out = root / f"callgrind.{what}.{state}"
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    argv = [*prefix, "valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
    argv += [
        str(BIN / "postgres"),
        "--single",
        "-D",
        str(data),
        "-c",
        "application_name=datasvc:bench",
        DATABASE,
    ]
    proc = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
    )
    stdin, stdout = proc.stdin, proc.stdout
    assert stdin is not None
    assert stdout is not None

    def send(line: str) -> None:
        stdin.write(line + "\n")
        stdin.flush()

    def settled(mark: str) -> None:
        """Every line sent so far has run: single-user mode answers in order."""
        send(f"SELECT '{mark}' AS mark")
        for line in stdout:
            if mark in line and "mark = " in line:
                return
        sys.exit(f"postgres --single ended early; see {out}")

    def writes(first: int, count: int) -> None:
        for i in range(first, first + count):
            if what == "create":
                send(f"EXECUTE c('ai_{i}@x.example', 'ai_{i}', '{HASH}', NULL, NULL)")
            else:
                send(f'EXECUTE u({1 + i * 7919 % 100000}, \'{{"bio": "ai{i}"}}\', NULL)')

    send(f"ALTER TABLE users {state} TRIGGER {TRIGGERS[what]}")  # a name from TRIGGERS
    send(f"PREPARE c(text, text, text, text, text) AS {statements['create']}")
    send(f"PREPARE u(bigint, text, bigint[]) AS {statements['update']}")
    send("CHECKPOINT")
    writes(0, WARM)
    settled("warm")
    pid = valgrind_pid(proc.pid)
    as_postgres(["callgrind_control", "-i", "on", pid], quiet=True)
    writes(WARM, n)
    settled("measured")
    as_postgres(["callgrind_control", "-i", "off", pid], quiet=True)
    stdin.close()
    stdout.read()
    proc.wait()
    totals = re.search(r"^totals:\s+(\d+)", out.read_text(), re.M)
    assert totals, f"no totals in {out}"
    return int(totals.group(1)) / n


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 256
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    registry = Registry.load(PROJECT_ROOT / "sql")
    statements = {name: one_line(registry[f"users.{name}"].text) for name in ("create", "update")}
    root = Path(tempfile.mkdtemp(prefix="audit-instructions-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    try:
        started = time.monotonic()
        snapshot = build(root, rows)
        print(f"snapshot: {rows} users ({time.monotonic() - started:.0f} s)", flush=True)
        for what in ("create", "patch"):
            off = measure(root, snapshot, what, "DISABLE", n, statements)
            on = measure(root, snapshot, what, "ENABLE", n, statements)
            print(
                f"{what:6s} instructions/statement off {off:,.0f}, on {on:,.0f}: "
                f"+{on - off:,.0f}, on/off {on / off:.3f}",
                flush=True,
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
