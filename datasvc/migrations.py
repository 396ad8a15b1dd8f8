"""yoyo migrations driven from ``DATABASE_URL``: apply, roll back, status, drift.

yoyo needs a synchronous driver, so this module uses psycopg 3; asyncpg stays the runtime driver.

Two things yoyo does not do, added here:

- **A lock that cannot go stale.** Every run that changes the schema first takes a PostgreSQL
  session-level advisory lock on a connection of its own (``migrate.try_lock``), waiting for it if another
  migrator holds it. The server releases it when that session ends, however the process died. Holding it
  proves nobody else is migrating, so a row left in yoyo's own ``yoyo_lock`` table (which has no expiry) is
  from a crashed run and is removed before yoyo takes its lock.
- **Drift.** yoyo identifies a migration by its id only. We record the SHA-256 of each migration's files
  (forward and rollback) when it is applied, in ``datasvc_migration_file``, and compare: an applied file
  whose content changed, or an applied migration the code does not ship, is drift.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import errors as pg_errors
from yoyo import get_backend, read_migrations

from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT

log = logging.getLogger("datasvc.migrations")

DEFAULT_SQL_DIR = PROJECT_ROOT / "sql"
# A rolling deploy's other migrators wait this long for the one that applies; an index build can be slow.
DEFAULT_WAIT = 600.0
_POLL = 0.2
APPLICATION_NAME = "datasvc-migrate"


class MigrationLockTimeout(Exception):
    """Another migrator held the advisory lock for longer than we were willing to wait."""


class RollbackRefused(Exception):
    """A rollback was not confirmed (data would be lost, or the service is connected); nothing changed."""


@dataclass(frozen=True)
class RollbackPlan:
    """What a rollback would do, seen under the migration lock before anything changes."""

    migrations: list[str]  # ids, most recent first, as they would be rolled back
    everything: bool  # every applied migration: the schema goes
    rows: dict[str, int]  # tables the rollback files drop -> rows they hold now
    sessions: list[tuple[int, str, str]]  # other sessions of the service: pid, application_name, client

    @property
    def loses_rows(self) -> bool:
        return any(self.rows.values())

    def losses(self) -> str:
        """``users (1200 rows), users_counts (4 rows)``: what would be lost, for a person to confirm."""
        held = [
            f"{table} ({rows} row{'s' if rows != 1 else ''})" for table, rows in self.rows.items() if rows
        ]
        return ", ".join(held) or "no rows"


# `DROP TABLE [IF EXISTS] a, b` in a rollback file: the tables whose rows a rollback would destroy.
_DROP_TABLE = re.compile(
    r"\bDROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?([\w.\",\s]+?)\s*(?:CASCADE|RESTRICT)?\s*;", re.I
)


def dropped_tables(migrations_dir: Path, ids: Sequence[str]) -> list[str]:
    """Tables the rollback files of ``ids`` drop, in order (read from the files, not run)."""
    found: list[str] = []
    for mid in ids:
        path = migrations_dir / f"{mid}.rollback.sql"
        text = path.read_text() if path.exists() else ""
        text = re.sub(r"--[^\n]*", "", text)
        for names in _DROP_TABLE.findall(text):
            found += [n.strip() for n in names.split(",") if n.strip() and n.strip() not in found]
    return found


def yoyo_url(database_url: str) -> str:
    """``postgresql://…`` as yoyo's psycopg 3 backend wants it (``postgresql+psycopg://…``)."""
    scheme, sep, rest = database_url.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must look like postgresql://user@host:port/dbname")
    if scheme in {"postgres", "postgresql"}:
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


# For every connection yoyo opens (it opens one per migration): name it in pg_stat_activity, and have the
# server check every second that the client is still there, so a killed migrator's half-run migration is
# rolled back at once instead of holding its locks until its current statement ends.
_SESSION_OPTIONS = {
    "application_name": APPLICATION_NAME,
    "options": "-c client_connection_check_interval=1000",
}


def _with_session_options(url: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    for key, value in _SESSION_OPTIONS.items():
        query.setdefault(key, value)
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


def _forward_files(migrations_dir: Path) -> list[Path]:
    return sorted(p for p in migrations_dir.glob("*.sql") if not p.name.endswith(".rollback.sql"))


def local_ids(migrations_dir: Path) -> list[str]:
    """Migration ids shipped in ``migrations_dir`` (file stems), in apply order."""
    return [p.name.removesuffix(".sql") for p in _forward_files(migrations_dir)]


def file_hash(forward: Path) -> str:
    """SHA-256 of a migration's forward file and, if present, its ``.rollback.sql`` sibling."""
    digest = hashlib.sha256(forward.read_bytes())
    rollback = forward.with_name(forward.name.removesuffix(".sql") + ".rollback.sql")
    if rollback.exists():
        digest.update(b"\0rollback\0")
        digest.update(rollback.read_bytes())
    return digest.hexdigest()


def local_hashes(migrations_dir: Path) -> dict[str, str]:
    """``{migration id: content hash}`` of every migration shipped in ``migrations_dir``."""
    return {p.name.removesuffix(".sql"): file_hash(p) for p in _forward_files(migrations_dir)}


@dataclass(frozen=True)
class Status:
    """Where the database stands against the shipped migrations."""

    applied: list[str]
    pending: list[str]
    changed: list[str] = field(default_factory=list)  # applied, but the file differs from what was applied
    unknown: list[str] = field(default_factory=list)  # applied in the database, not shipped by this code
    unrecorded: list[str] = field(default_factory=list)  # applied without datasvc: no hash to compare

    @property
    def drift(self) -> bool:
        return bool(self.changed or self.unknown)


def compare(local: Mapping[str, str], applied: Sequence[str], recorded: Mapping[str, str] | None) -> Status:
    """Pure comparison of shipped files, applied ids and recorded hashes (None: no hash table)."""
    done = set(applied)
    recorded = recorded or {}
    return Status(
        applied=[m for m in local if m in done],
        pending=[m for m in local if m not in done],
        changed=[m for m in local if m in done and m in recorded and recorded[m] != local[m]],
        unknown=sorted(done - set(local)),
        unrecorded=[m for m in local if m in done and m not in recorded],
    )


def _registry(sql_dir: Path | None) -> Registry:
    return Registry.load(sql_dir or DEFAULT_SQL_DIR)


def _rows(conn: psycopg.Connection[Any], registry: Registry, name: str, *args: Any) -> list[Any]:
    """Run a registry statement on a psycopg connection with PostgreSQL's own ``$n`` placeholders."""
    with psycopg.RawCursor(conn) as cur:
        cur.execute(registry[name].text, args or None)
        return cur.fetchall() if cur.description else []


@contextmanager
def _exclusive(database_url: str, registry: Registry, wait: float) -> Iterator[psycopg.Connection[Any]]:
    """Hold the migration advisory lock for the block; wait up to ``wait`` seconds for it."""
    conn = psycopg.connect(database_url, autocommit=True, application_name=APPLICATION_NAME)
    try:
        deadline = time.monotonic() + wait
        announced = False
        while not _rows(conn, registry, "migrate.try_lock")[0][0]:
            if time.monotonic() >= deadline:
                raise MigrationLockTimeout(f"another migrator held the lock for more than {wait:g}s")
            if not announced:
                log.info("another migrator is running; waiting for it")
                announced = True
            time.sleep(_POLL)
        yield conn
        _rows(conn, registry, "migrate.unlock")
    finally:
        conn.close()  # ends the session, which releases the advisory lock on any path


@contextmanager
def _yoyo(
    database_url: str, migrations_dir: Path, lock_conn: psycopg.Connection[Any], registry: Registry
) -> Iterator[tuple[Any, Any]]:
    """yoyo's backend and the shipped migrations, with yoyo's lock taken; call under the advisory lock."""
    backend = get_backend(_with_session_options(yoyo_url(database_url)))
    try:
        stale = _rows(lock_conn, registry, "migrate.break_yoyo_lock")
        if stale:
            log.warning("removed a stale yoyo lock", extra={"pids": [r[0] for r in stale]})
        with backend.lock():
            yield backend, read_migrations(str(migrations_dir))
    finally:
        backend.connection.close()  # yoyo never closes its connection


def apply(
    database_url: str,
    migrations_dir: Path,
    *,
    sql_dir: Path | None = None,
    wait: float = DEFAULT_WAIT,
) -> list[str]:
    """Apply every pending migration under the advisory lock; return the ids applied.

    Hashes are recorded for the migrations applied now, and for applied ones that have none yet (a
    database migrated by plain yoyo is adopted as it stands).
    """
    registry = _registry(sql_dir)
    with _exclusive(database_url, registry, wait) as conn:
        _rows(conn, registry, "migrate.create_file_table")
        with _yoyo(database_url, migrations_dir, conn, registry) as (backend, migrations):
            pending = backend.to_apply(migrations)
            # One at a time, for one line each (yoyo's own, one per step, are debug: datasvc/logs.py); its
            # post-apply hooks (we ship none) run once, after the last.
            for i, migration in enumerate(pending, 1):
                log.info("applying migration", extra={"migration": migration.id})
                hooks = pending.post_apply if i == len(pending) else None
                backend.apply_migrations(type(pending)([migration], post_apply=hooks))
        applied_now = [m.id for m in pending]
        state = _status(conn, registry, migrations_dir)
        to_record = [m for m in state.applied if m in applied_now or m in state.unrecorded]
        local = local_hashes(migrations_dir)
        if to_record:
            _rows(conn, registry, "migrate.record_files", to_record, [local[m] for m in to_record])
        if state.drift:
            log.warning("migration drift", extra={"changed": state.changed, "unknown": state.unknown})
    return applied_now


def rollback(
    database_url: str,
    migrations_dir: Path,
    count: int | None = 1,
    *,
    sql_dir: Path | None = None,
    wait: float = DEFAULT_WAIT,
    confirm: Callable[[RollbackPlan], None] | None = None,
    application_name: str = "datasvc",
) -> list[str]:
    """Roll back the ``count`` most recent migrations (all of them when ``count`` is None).

    ``confirm`` sees the plan under the migration lock, before anything changes, and raises
    `RollbackRefused` to change nothing; ``application_name`` is the service's, whose sessions it lists.
    """
    if count is not None and count < 1:
        raise ValueError("count must be >= 1 (None: all)")
    registry = _registry(sql_dir)
    with _exclusive(database_url, registry, wait) as conn:
        _rows(conn, registry, "migrate.create_file_table")
        with _yoyo(database_url, migrations_dir, conn, registry) as (backend, migrations):
            applied = backend.to_rollback(migrations)
            chosen = applied[:count] if count is not None else applied
            if confirm is not None and chosen:
                confirm(_plan(conn, registry, migrations_dir, chosen, applied, application_name))
            for migration in chosen:
                log.info("rolling back migration", extra={"migration": migration.id})
                backend.rollback_migrations(type(chosen)([migration]))
        done = [m.id for m in chosen]
        if done:
            _rows(conn, registry, "migrate.forget_files", done)
    return done


def _plan(
    conn: psycopg.Connection[Any],
    registry: Registry,
    migrations_dir: Path,
    chosen: Sequence[Any],
    applied: Sequence[Any],
    application_name: str,
) -> RollbackPlan:
    ids = [m.id for m in chosen]
    tables = dropped_tables(migrations_dir, ids)
    rows = {str(t): int(n) for t, n in _rows(conn, registry, "migrate.table_rows", tables)} if tables else {}
    sessions = [
        (int(p), str(a), str(c))
        for p, a, c, _ in _rows(conn, registry, "migrate.other_sessions", application_name)
    ]
    return RollbackPlan(migrations=ids, everything=len(chosen) == len(applied), rows=rows, sessions=sessions)


def status(database_url: str, migrations_dir: Path, *, sql_dir: Path | None = None) -> Status:
    """Applied, pending and drifted migrations; reads only, takes no lock, creates nothing."""
    registry = _registry(sql_dir)
    with psycopg.connect(database_url, autocommit=True, application_name=APPLICATION_NAME) as conn:
        return _status(conn, registry, migrations_dir)


def _status(conn: psycopg.Connection[Any], registry: Registry, migrations_dir: Path) -> Status:
    try:
        applied = [r[0] for r in _rows(conn, registry, "health.applied_migrations")]
    except pg_errors.UndefinedTable:  # yoyo never ran here
        applied = []
    try:
        recorded: dict[str, str] | None = dict(_rows(conn, registry, "migrate.file_hashes"))
    except pg_errors.UndefinedTable:  # migrated without datasvc
        recorded = None
    return compare(local_hashes(migrations_dir), applied, recorded)


def status_lines(state: Status) -> list[str]:
    """``datasvc migrate --status`` output: one line per migration, drift called out."""
    lines = [f"{'changed' if m in state.changed else 'applied':<10}{m}" for m in state.applied]
    lines += [f"{'pending':<10}{m}" for m in state.pending]
    lines += [
        f"{'unknown':<10}{m}  (applied in the database, not shipped by this code)" for m in state.unknown
    ]
    if state.changed:
        lines.append("drift: file content changed since applied: " + ", ".join(state.changed))
    if state.unrecorded:
        lines.append(
            "note: no content hash recorded (applied outside datasvc): " + ", ".join(state.unrecorded)
        )
    return lines
