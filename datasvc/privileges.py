"""A warning at start-up when the service connects with more rights than it needs.

The service needs the runtime role ``datasvc_app`` (migration 0003): column-limited DML on ``users``, no
DDL. Connected as a superuser or as the schema's owner, one SQL-level bug could drop the table or write
any column, so each worker says so once, as soon as the database answers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasvc.db import Database

log = logging.getLogger("datasvc.privileges")

RETRY_SECONDS = 1.0


async def warn_if_privileged(db: Database) -> None:
    """Look up the login's rights once the database answers; warn if it is a superuser or an owner."""
    while True:
        try:
            row = await db.run("session.privileges")
            break
        except Exception:  # the database is down or starting: ask again once it answers
            await asyncio.sleep(RETRY_SECONDS)
    held = (("a superuser", row["is_super"]), ("the schema owner", row["is_owner"]))
    rights = [what for what, has in held if has]
    if not rights:
        log.info("database role has no more rights than needed", extra={"role": row["login_role"]})
    else:
        log.warning(
            f"CONNECTED WITH MORE RIGHTS THAN NEEDED: role {row['login_role']} is {' and '.join(rights)}; "
            "serve as the runtime role datasvc_app (migration 0003) and keep the owner for migrations",
            extra={"role": row["login_role"], "superuser": row["is_super"], "owner": row["is_owner"]},
        )
