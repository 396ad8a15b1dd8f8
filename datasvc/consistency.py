"""Read-your-writes across replicas: the ``X-Consistency-Token`` header.

Every successful write (an `Operation` declared ``consistency="write"``) answers with a token: the primary's
WAL insert position read right after the write committed (``sql/replica/insert_lsn.sql``, one more round
trip on the primary, only when replicas are configured), which is past the write's commit record. A
position read inside the write statement (in its ``RETURNING``) would come before the commit record, and
a replica that replayed up to it might not show the write yet. A read (``consistency="read"``) that sends
it back is served by a replica only if that replica has replayed up to it (`datasvc.replicas`), otherwise
by the primary. The token is PostgreSQL's own LSN text (``0/16B3748``): opaque to callers, comparable by a
DBA with ``pg_last_wal_replay_lsn()``.

`apply` wraps the endpoints of the operations that declare it, when the app is wired: the router knows
nothing of this feature.

A token that does not parse is not refused: the read goes to the primary, whose answer is never stale. A
caller that sends a token wants its writes back, and the primary always has them; and during a rolling
deploy an instance may meet tokens of a newer format than its own, which must not break reads.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from datasvc.context import UNREACHABLE, request_min_lsn
from datasvc.inputs import header
from datasvc.routing import Endpoint, Operation

if TYPE_CHECKING:
    from contextvars import Token

    from starlette.requests import Request
    from starlette.responses import Response

    from datasvc.db import Database

HEADER = "X-Consistency-Token"
_HEADER_KEY = HEADER.lower().encode()
PRIMARY_ONLY = "primary"  # the token of an instance without replicas
PATTERN = r"^([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})$"
_LSN = re.compile(PATTERN)

log = logging.getLogger("datasvc.consistency")


def apply(
    operations: Sequence[Operation], *, replicas: bool, after_write: Callable[[], object] | None = None
) -> tuple[Operation, ...]:
    """``operations`` with the declared consistency: writes stamp a token, reads honour one.

    Without replicas (``replicas`` False) every read runs on the primary, so a token changes nothing
    there and reads are left as they are; writes still answer ``primary``. ``after_write`` is told of
    every 2xx answer to a write, once its token is stamped (the change feed's wake-up): one wrapper does
    both, as every frame around an endpoint is paid again at each of its awaits.
    """
    out = []
    for op in operations:
        if op.consistency == "write":
            op = dataclasses.replace(op, endpoint=_stamping(op.endpoint, after_write))
        elif op.consistency == "read" and replicas:
            op = dataclasses.replace(op, endpoint=_pinning(op.endpoint))
        out.append(op)
    return tuple(out)


def _stamping(endpoint: Endpoint, after_write: Callable[[], object] | None) -> Endpoint:
    async def stamped(request: Request) -> Response:
        response = await endpoint(request)
        await stamp(request, response)
        if after_write is not None and 200 <= response.status_code < 300:
            after_write()
        return response

    return stamped


def _pinning(endpoint: Endpoint) -> Endpoint:
    async def pinned(request: Request) -> Response:
        token = pin_reads(request)
        try:
            return await endpoint(request)
        finally:
            if token is not None:
                request_min_lsn.reset(token)

    return pinned


def encode(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def decode(token: str) -> int:
    """The WAL position a token names; one no replica reaches when it is not a token we issued."""
    match = _LSN.match(token.strip())
    if match is None:
        return UNREACHABLE
    return int(match[1], 16) << 32 | int(match[2], 16)


def pin_reads(request: Request) -> Token[int | None] | None:
    """Before a read: make this request's replica reads wait for the token's position, if it sent one."""
    raw = header(request, _HEADER_KEY)  # the raw headers: no `Headers` object built on every read
    if raw is None:
        return None
    return request_min_lsn.set(decode(raw))


async def stamp(request: Request, response: Response) -> None:
    """After a successful write: the token that makes the caller's next reads see it."""
    if not 200 <= response.status_code < 300:
        return
    db: Database = request.scope["state"]["db"]
    if not db.replicas:
        # Every read runs on the primary here: no round trip for a position nobody compares with. The
        # token still pins reads to the primary on an instance that has replicas.
        response.headers[HEADER] = PRIMARY_ONLY
        return
    try:
        lsn = await db.run("replica.insert_lsn")
    except Exception as exc:
        # The write has committed: answering 503 now would make the caller repeat it. Without the token
        # its next reads may miss the write on a replica; say so in the log.
        log.warning("write answered without a consistency token", extra={"error": type(exc).__name__})
        return
    response.headers[HEADER] = encode(lsn)
