"""Purging the audit trail: changes older than ``DATASVC_CHANGES_RETENTION`` go, a bounded batch at a time.

Each worker runs `purge_forever`; the purge function takes an advisory lock (migration 0015), so of
several workers or instances one purges and the others find nothing to do. A batch is one short
transaction (a DELETE of at most `BATCH` rows read in trail order), with a pause between batches so a
backlog never holds the table or a pool slot for long.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datasvc.db import Database

log = logging.getLogger("datasvc.retention")

BATCH = 5000
EVERY = 60.0  # seconds between purges once nothing is left
PAUSE = 0.05  # between two batches of a backlog


async def purge_once(db: Database, retention: float, batch: int = BATCH) -> int:
    """Purge until a batch comes back short; the number of changes purged."""
    total = 0
    while True:
        purged: int = await db.run("users.changes_purge", timedelta(seconds=retention), batch)
        total += purged
        if purged < batch:
            return total
        await asyncio.sleep(PAUSE)


async def purge_forever(db: Database, retention: float) -> None:
    """`purge_once` every `EVERY` seconds; a failure is logged and tried again next time."""
    while True:
        try:
            purged = await purge_once(db, retention)
            if purged:
                log.info("audit trail purged", extra={"changes": purged})
        except Exception as exc:
            log.warning("audit trail purge failed", extra={"error": type(exc).__name__})
        await asyncio.sleep(EVERY)
