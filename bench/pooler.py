"""The targets behind PgBouncer: ``pgbouncer-1.24`` (statement cache on) and ``pgbouncer-1.18`` (cache off).

``pgbouncer-1.24-socket`` is ``pgbouncer-1.24`` reached over its Unix socket: PgBouncer deployed beside
the service (a sidecar), its hop to PostgreSQL still over TCP, as to a database on another host.
``pgbouncer-1.24-tokens`` and ``direct-app-tokens`` are ``pgbouncer-1.24`` and ``direct-app`` with four
callers, lookups by id only: what per-caller ``application_name`` costs behind PgBouncer.

And their baseline without a pooler, ``direct-app``: the same service in the same mode as the same role,
connected straight to PostgreSQL, so that a ratio to it is the pooler's cost alone (``datasvc-1w``
connects as the server URL's user, a superuser by default, in session mode).

Each is ``datasvc serve --workers 1`` in ``DATASVC_POOL_MODE=transaction``, connected as the runtime role
``datasvc_app`` (whose role settings transaction mode requires; the direct targets connect as the
server URL's user) through a PgBouncer in ``pool_mode=transaction`` started for the run (the same
PgBouncer the tests start: tests/support/pgbouncer.py; 1.24 from ``scripts/pgbouncer-build``). They take part
in the lookup by id and the create only: what a pooler adds is a hop per statement, which shows on the
cheapest requests.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

from tests.support.pgbouncer import PgBouncer

# target → (PgBouncer version, DATASVC_STATEMENT_CACHE_SIZE, service → PgBouncer over its Unix socket):
# 1.18 passes statement names through, so asyncpg's cache must be off there (the service refuses to start
# otherwise).
TARGETS: dict[str, tuple[str | None, int, bool]] = {
    "direct-app": (None, 100, False),
    "pgbouncer-1.24": ("1.24", 100, False),
    "pgbouncer-1.24-socket": ("1.24", 100, True),
    "pgbouncer-1.18": ("1.18", 0, False),
    # Four callers (bench/services.py BENCH_TOKENS, sent in turn): each request names its caller in the
    # session's application_name, which PgBouncer then sets on whichever server connection it hands over.
    "direct-app-tokens": (None, 100, False),
    "pgbouncer-1.24-tokens": ("1.24", 100, False),
}
SCENARIOS = ("by_id", "create")


def scenarios(target: str) -> tuple[str, ...]:
    """What ``target`` takes part in: the callers with tokens have read scopes only, so no create."""
    return ("by_id",) if target.endswith("-tokens") else SCENARIOS


ROLE = "datasvc_app"


@dataclass(frozen=True)
class Started:
    """What the service needs to reach the database through ``target``, and the PgBouncer's process."""

    url: str  # the service's DATABASE_URL
    env: dict[str, str]  # and its settings
    pooler_pid: int | None  # None for a direct target: its CPU is measured beside the service's


@contextmanager
def started(
    target: str, server: str, database: str, pool_size: int = 10, clients: int | None = None
) -> Iterator[Started]:
    """A PgBouncer for ``target`` in front of ``server`` (none for a direct target), for one service.

    ``pool_size``: PgBouncer's server connections (``default_pool_size``, ``--pooler-pool``), what the
    database sees, as many as the direct target's pool (10) by default. ``clients``: the service's pool
    (``DATASVC_POOL_MAX``) behind PgBouncer, its client connections (``--pooler-clients``, by default
    wrk's connections; None here: ``pool_size``). With more clients than server connections the requests
    in flight wait in PgBouncer's queue, which hands a server connection to the next client the moment
    PostgreSQL has answered, rather than at the service's gate, where a connection is free again only once
    the service's event loop has read the answer (docs/scaling.md, *Sizing the pools*).
    """
    version, cache_size, via_socket = TARGETS[target]
    parts = urlsplit(server)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    env = {"DATASVC_POOL_MODE": "transaction", "DATASVC_STATEMENT_CACHE_SIZE": str(cache_size)}
    if version is None:
        yield Started(f"postgresql://{ROLE}@{host}:{port}/{database}", env, None)
        return
    env["DATASVC_POOL_MAX"] = str(clients or pool_size)
    with PgBouncer(version, pool_size=pool_size, server=(host, port), unix_socket=via_socket) as bouncer:
        url = (bouncer.socket_url if via_socket else bouncer.url)(database, ROLE)
        assert bouncer.process is not None
        yield Started(url, env, bouncer.process.pid)
