"""The targets behind PgBouncer: ``pgbouncer-1.24`` (statement cache on) and ``pgbouncer-1.18`` (cache off).

And their baseline without a pooler, ``direct-app``: the same service in the same mode as the same role,
connected straight to PostgreSQL, so that a ratio to it is the pooler's cost alone (``datasvc-1w``
connects as the server URL's user, a superuser by default, in session mode).

Each is ``datasvc serve --workers 1`` in ``DATASVC_POOL_MODE=transaction``, connected as the runtime role
``datasvc_app`` (whose role settings transaction mode requires; the direct targets connect as the
server URL's user) through a PgBouncer in ``pool_mode=transaction`` started for the run (the same
PgBouncer the tests start: tests/pgbouncer.py; 1.24 from ``scripts/pgbouncer-build``). They take part
in the lookup by id and the create only: what a pooler adds is a hop per statement, which shows on the
cheapest requests. PgBouncer reaches PostgreSQL over its Unix socket, as it does deployed beside it
(`server_address`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

from tests.pgbouncer import PgBouncer

# target → (PgBouncer version, DATASVC_STATEMENT_CACHE_SIZE): 1.18 passes statement names through, so
# asyncpg's cache must be off there (the service refuses to start otherwise).
TARGETS: dict[str, tuple[str | None, int]] = {
    "direct-app": (None, 100),
    "pgbouncer-1.24": ("1.24", 100),
    "pgbouncer-1.18": ("1.18", 0),
}
SCENARIOS = ("by_id", "create")
ROLE = "datasvc_app"
SOCKET_DIR = Path("/var/run/postgresql")  # Debian's PostgreSQL's Unix sockets


def server_address(host: str, port: int) -> tuple[str, int]:
    """Where PgBouncer reaches PostgreSQL: its Unix socket when the server is on this machine.

    That is how PgBouncer is deployed: beside PostgreSQL, on its host, while the services reach it (and,
    without a pooler, PostgreSQL itself) over the network, TCP here. ``BENCH_PGBOUNCER_SERVER=tcp``
    keeps PgBouncer on TCP too (the A/B in docs/benchmarks.md).
    """
    socket = SOCKET_DIR / f".s.PGSQL.{port}"
    local = host in {"127.0.0.1", "localhost", "::1"}
    if local and socket.exists() and os.environ.get("BENCH_PGBOUNCER_SERVER", "unix") == "unix":
        return str(SOCKET_DIR), port
    return host, port


@contextmanager
def started(target: str, server: str, database: str) -> Iterator[tuple[str, dict[str, str]]]:
    """A PgBouncer for ``target`` in front of ``server``: the service's DATABASE_URL and its settings."""
    version, cache_size = TARGETS[target]
    parts = urlsplit(server)
    host, port = parts.hostname or "127.0.0.1", parts.port or 5432
    env = {"DATASVC_POOL_MODE": "transaction", "DATASVC_STATEMENT_CACHE_SIZE": str(cache_size)}
    if version is None:
        yield f"postgresql://{ROLE}@{host}:{port}/{database}", env
        return
    # Pool as large as the service's (DATASVC_POOL_MAX, 10): no request waits in PgBouncer's queue.
    with PgBouncer(version, pool_size=10, server=server_address(host, port)) as bouncer:
        yield bouncer.url(database, ROLE), env
