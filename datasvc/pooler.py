"""Start-up checks of transaction-pooler mode (``DATASVC_POOL_MODE=transaction``).

Behind a transaction pooler (PgBouncer ``pool_mode=transaction``) each transaction may run on another
server connection, shared with other clients, so the service keeps no session state: it sends only
``application_name`` at connect (`datasvc.connections.server_settings`). Two things it then cannot set
itself must hold before it serves, and it refuses to start (`PoolerRefused`, with what to do) when they
do not:

- **The role's settings.** ``statement_timeout``, ``lock_timeout`` and
  ``idle_in_transaction_session_timeout`` in force must be what ``DATASVC_STATEMENT_TIMEOUT`` and
  ``DATASVC_LOCK_TIMEOUT`` say (the client-side timeout and the 504/503 answers are derived from them),
  and ``plan_cache_mode`` must be ``auto`` (the ``-- plan-cache:`` headers assume it). Migration 0008
  stores them on ``datasvc_app``. A mismatch is refused rather than warned about: the service would
  otherwise run without a server-side bound, or with one it does not know.
- **Prepared statements.** With asyncpg's statement cache on (``DATASVC_STATEMENT_CACHE_SIZE`` > 0) the
  pooler must support prepared statements: PgBouncer >= 1.21 (``max_prepared_statements`` > 0) gives each
  client's statements server-side names of its own; an older one passes asyncpg's names
  (``__asyncpg_stmt_<n>__``, the same sequence in every process) through, and two clients then execute
  each other's statements: errors, and silently wrong rows updated.

How a pooler without that support is told apart, from an ordinary connection: a pooler announces a
process id of its own at connect (PgBouncer a random one, as the cancel key), so ``pg_backend_pid()``
differs from it; and a statement prepared under a name, looked up in ``pg_prepared_statements`` in the
same transaction, is found under that name only if nobody renamed it. Announced pid ≠ backend pid and
name found: a pooler that passes names through. What this cannot tell: a pooler that forwards the
server's own process id (none known) would pass for a direct connection (docs/scaling.md says so).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import TYPE_CHECKING

from datasvc.connections import role_settings
from datasvc.statements import execute

if TYPE_CHECKING:
    from datasvc.db import Database

log = logging.getLogger("datasvc.pooler")

RETRY_SECONDS = 1.0
PLAN_CACHE_MODE = "auto"


class PoolerRefused(RuntimeError):
    """Transaction-pooler mode cannot run safely against this database; the message says what to set."""


async def check(db: Database) -> None:
    """Once the database answers, raise `PoolerRefused` unless transaction mode can run safely there."""
    deadline = time.monotonic() + db.settings.start_timeout
    while True:
        try:
            problems = [*await _role_problems(db), *await _prepared_statement_problems(db)]
            break
        except Exception as exc:  # the database or the pooler's server is not there yet: ask again
            if time.monotonic() >= deadline:  # never "waiting" for ever: DATASVC_START_TIMEOUT bounds it
                raise PoolerRefused(
                    f"transaction mode checks: no answer from the database within DATASVC_START_TIMEOUT="
                    f"{db.settings.start_timeout:g}s ({type(exc).__name__})"
                ) from None
            log.warning("transaction mode checks wait for the database", extra={"error": repr(exc)})
            await asyncio.sleep(RETRY_SECONDS)
    if problems:
        message = "DATASVC_POOL_MODE=transaction refused: " + " ".join(problems)
        log.error(message)
        raise PoolerRefused(message)
    log.info(
        "transaction pooler mode: role settings in force, no session state",
        extra={"statement_cache_size": db.settings.statement_cache_size},
    )


async def _role_problems(db: Database) -> list[str]:
    row = await db.run("session.settings_in_force")
    wanted = {**role_settings(db.settings), "plan_cache_mode": PLAN_CACHE_MODE}
    wrong = {name: value for name, value in wanted.items() if row[name] != value}
    if not wrong:
        return []
    role = row["role_name"]
    found = ", ".join(f"{name}={_with_unit(name, row[name])}" for name in wrong)
    fix = "; ".join(f"ALTER ROLE {role} SET {name} = '{_with_unit(name, v)}'" for name, v in wrong.items())
    return [
        f"the service sends no session SET in this mode, so the timeouts and plan_cache_mode must come "
        f"from the database role, but role {role} runs with {found} where the service needs "
        f"{', '.join(f'{name}={_with_unit(name, v)}' for name, v in wrong.items())} "
        f"(from DATASVC_STATEMENT_TIMEOUT={db.settings.statement_timeout}, "
        f"DATASVC_LOCK_TIMEOUT={db.settings.lock_timeout}). Apply migration 0008 (datasvc migrate), or run "
        f"{fix}; or set DATASVC_STATEMENT_TIMEOUT / DATASVC_LOCK_TIMEOUT to the role's values."
    ]


def _with_unit(name: str, value: str) -> str:
    return value if name == "plan_cache_mode" else f"{value}ms"


async def _prepared_statement_problems(db: Database) -> list[str]:
    if db.settings.statement_cache_size == 0:
        return []  # asyncpg then sends every statement unnamed, parsed in the same message as its Bind
    probe = db.registry["session.pooler_probe"]
    name = f"datasvc_probe_{secrets.token_hex(8)}"
    async with db.connection() as conn, conn.transaction():  # one server connection for the whole probe
        # Held until the look-up has run: asyncpg closes a dropped prepared statement before the next query.
        prepared = await conn.prepare(probe.text, name=name)
        row = await execute(conn, probe, (name,))
        announced = conn.get_server_pid()
        del prepared
    if row["backend_pid"] == announced or not row["name_visible"]:
        return []
    return [
        "A pooler between the service and PostgreSQL passes prepared statements' names through "
        "(PgBouncer older than 1.21, or max_prepared_statements = 0): with asyncpg's statement cache on, "
        "clients sharing its server connections would run each other's statements. "
        "Set DATASVC_STATEMENT_CACHE_SIZE=0, or use PgBouncer 1.21+ with max_prepared_statements > 0."
    ]
