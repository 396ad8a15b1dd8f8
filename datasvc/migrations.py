"""yoyo migrations driven from ``DATABASE_URL``: apply, roll back, status.

yoyo needs a synchronous driver, so this module uses psycopg 3; asyncpg stays the runtime driver.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yoyo import get_backend, read_migrations


def yoyo_url(database_url: str) -> str:
    """``postgresql://…`` as yoyo's psycopg 3 backend wants it (``postgresql+psycopg://…``)."""
    scheme, sep, rest = database_url.partition("://")
    if not sep:
        raise ValueError("DATABASE_URL must look like postgresql://user@host:port/dbname")
    if scheme in {"postgres", "postgresql"}:
        scheme = "postgresql+psycopg"
    return f"{scheme}://{rest}"


def local_ids(migrations_dir: Path) -> list[str]:
    """Migration ids shipped in ``migrations_dir`` (file stems), in apply order."""
    return sorted(
        p.name.removesuffix(".sql")
        for p in migrations_dir.glob("*.sql")
        if not p.name.endswith(".rollback.sql")
    )


@dataclass(frozen=True)
class Status:
    applied: list[str]
    pending: list[str]


@contextmanager
def _open(database_url: str, migrations_dir: Path) -> Iterator[tuple[Any, Any]]:
    """yoyo's backend and the shipped migrations; yoyo never closes its connection, so we do."""
    backend = get_backend(yoyo_url(database_url))
    try:
        yield backend, read_migrations(str(migrations_dir))
    finally:
        backend.connection.close()


def apply(database_url: str, migrations_dir: Path) -> list[str]:
    """Apply every pending migration under yoyo's lock; return the ids applied."""
    with _open(database_url, migrations_dir) as (backend, migrations), backend.lock():
        pending = backend.to_apply(migrations)
        backend.apply_migrations(pending)
    return [m.id for m in pending]


def rollback(database_url: str, migrations_dir: Path, count: int | None = 1) -> list[str]:
    """Roll back the ``count`` most recent migrations (all of them when ``count`` is None)."""
    with _open(database_url, migrations_dir) as (backend, migrations), backend.lock():
        applied = backend.to_rollback(migrations)
        chosen = applied[:count] if count is not None else applied
        backend.rollback_migrations(chosen)
    return [m.id for m in chosen]


def status(database_url: str, migrations_dir: Path) -> Status:
    with _open(database_url, migrations_dir) as (backend, migrations):
        applied_hashes = set(backend.get_applied_migration_hashes())
        return Status(
            applied=[m.id for m in migrations if m.hash in applied_hashes],
            pending=[m.id for m in migrations if m.hash not in applied_hashes],
        )
