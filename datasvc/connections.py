"""How the service's connections are opened and given back: what each session is set up with, and
whether a connection may serve another request as it is (`reusable`).

Every pool (the primary's, each replica's) is made by `create_pool` with the same shape: the session
settings sent at connect (`server_settings`; behind a transaction pooler only ``application_name``, the
timeouts then coming from the role, `role_settings`), orjson codecs for json/jsonb, and a release that
sends nothing (`_keep_session`). Running statements on those connections is `datasvc.db`'s job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import asyncpg
import orjson

if TYPE_CHECKING:
    from datasvc.settings import Settings


def server_settings(settings: Settings) -> dict[str, str]:
    """Session settings sent at connect time; the server enforces the timeouts even if we hang.

    Behind a transaction pooler (``DATASVC_POOL_MODE=transaction``) only ``application_name``: PgBouncer
    refuses other startup parameters (or, with ``ignore_startup_parameters``, drops them silently), and
    the server connection they would set is shared with other clients. The timeouts then come from the
    role (migration 0008), which `datasvc.pooler.check` verifies at start-up.
    """
    if settings.pool_mode == "transaction":
        return {"application_name": settings.application_name}
    return {"application_name": settings.application_name, **role_settings(settings)}


def role_settings(settings: Settings) -> dict[str, str]:
    """The timeouts the service runs under, in milliseconds: sent at connect, or expected of the role."""
    return {
        "statement_timeout": str(int(settings.statement_timeout * 1000)),
        "lock_timeout": str(int(settings.lock_timeout * 1000)),
        "idle_in_transaction_session_timeout": str(int((settings.statement_timeout + 5) * 1000)),
    }


async def create_pool(settings: Settings, *, min_size: int, url: str | None = None) -> asyncpg.Pool:
    """A pool to ``url`` (default: DATABASE_URL); replicas get the same connect settings as the primary."""
    return await asyncpg.create_pool(
        url or settings.database_url,
        min_size=min_size,
        max_size=settings.pool_max_size,
        timeout=settings.connect_timeout,
        # Client-side bound a little above the server's statement_timeout: catches a stalled network.
        command_timeout=settings.statement_timeout + 1.0,
        server_settings=server_settings(settings),
        statement_cache_size=settings.statement_cache_size,
        init=_init_connection,
        reset=_keep_session,
        max_inactive_connection_lifetime=300.0,
    )


async def _init_connection(conn: asyncpg.Connection) -> None:
    # orjson for json/jsonb both ways: faster than the stdlib and the same encoder as the responses.
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename,
            schema="pg_catalog",
            encoder=lambda v: orjson.dumps(v).decode(),
            decoder=orjson.loads,
            format="text",
        )


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without asyncpg's default reset query (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL).

    That query is one more round trip per request, and about a fifth of a worker's CPU on a lookup
    (profiled, docs/benchmarks.md). Nothing here leaves session state behind: no statement takes advisory
    locks, LISTENs or declares cursors outside a transaction, and the only session setting changed after
    connect, application_name, is set per request by `datasvc.pool.Pool.acquire`. An open transaction is still
    rolled back: asyncpg does that before calling this.
    """


def session_name(conn: asyncpg.Connection) -> str | None:
    """The ``application_name`` ``conn`` runs under; None when it is not usable any more (see `reusable`)."""
    try:
        name: str = conn.get_settings().application_name
    except Exception:
        return None
    return name


def reusable(conn: asyncpg.Connection) -> bool:
    """Whether ``conn`` may serve another request as it is: open, outside a transaction, no cancel pending.

    A pooled connection that dies (its backend killed while parked, say) is taken back by asyncpg itself,
    and its proxy then raises InterfaceError ("released back to the pool") even for `is_closed`.
    """
    try:
        # A connection whose statement was cancelled (a caller's deadline, `datasvc.preferences`) still
        # awaits the server's answer to the cancel request: only asyncpg's own release waits for that.
        # `_protocol._is_cancelling()` is private: pinned in pyproject.toml, tests/test_private_apis.py.
        return not conn.is_closed() and not conn.is_in_transaction() and not conn._protocol._is_cancelling()
    except Exception:  # asyncpg's InterfaceError; whatever fails here, the connection is not used
        return False
