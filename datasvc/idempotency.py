"""``Idempotency-Key``: a write retried with the same key is answered from the record of the first.

The header (draft-ietf-httpapi-idempotency-key-header) is an RFC 8941 string, ``"8e03978e-…"``, or a bare
token: 1 to 255 visible ASCII characters, else 422 naming the header. Keys belong to the caller (its
token's name; one shared scope when the service runs without tokens).

How a keyed write runs (sql/users/*_keyed.sql, sql/users/batch_create.sql), in one statement and so one
round trip: if the key is not recorded yet, the write happens and its answer (the rows as written) is
inserted into ``idempotency_keys`` by the same statement: both commit, or neither. If it is, nothing is
written and the statement returns the record. The record's ``fingerprint`` (method, path, canonical JSON
body, ``If-Match``) must match the retry's, else 422 ``idempotency-key-reused``.

Concurrent requests with one key: the first to commit wins. The others wait in PostgreSQL for it (on the
key's primary key, or on the users' unique columns), then fail with 23505 and are answered from its
record (`replay_after_conflict`): a retry while the first is running waits for it and replays. Only if
no record is visible after such a failure (the first rolled back meanwhile) is the answer 409
``idempotency-key-in-flight`` with ``Retry-After``.

What is recorded is the resource as written, not response bytes: the answer, first or replayed, is
rendered from it by one function (`user_from_record`), so the replay's body, status, ``Location`` and
``ETag`` are those of the first, byte for byte; ``X-Consistency-Token`` is issued afresh on a replay, past
the write's commit, so it still lets the caller read the write. Failures are never recorded: a 4xx
changed nothing (its retry answers the same by itself), a 5xx may be retried.

Expired keys (``DATASVC_IDEMPOTENCY_TTL``) are deleted by `purge_forever`, every `PURGE_PERIOD` seconds in
each worker: up to `PURGE_BATCHES` statements of `PURGE_BATCH` rows each, oldest first (SKIP LOCKED, so
workers never queue behind each other), so one run's work is bounded however many keys expired.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from asyncpg import exceptions as pg

from datasvc.context import request_caller
from datasvc.errors import FieldError, IdempotencyKeyInFlight, IdempotencyKeyReused, ValidationFailed
from datasvc.inputs import header

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from datasvc.db import Database

HEADER = "Idempotency-Key"
REPLAYED = "Idempotent-Replayed"
_KEY = b"idempotency-key"
_VISIBLE = re.compile(r"^[\x21-\x7e]{1,255}$")
PURGE_PERIOD = 60.0
PURGE_BATCH = 1000
PURGE_BATCHES = 10
_TIMESTAMPS = ("created_at", "updated_at")

log = logging.getLogger("datasvc.idempotency")


@dataclass(frozen=True, slots=True)
class Key:
    """An ``Idempotency-Key`` of a request: whose, which, and what request it was sent with."""

    scope: str
    key: str
    fingerprint: bytes

    def args(self, ttl: float) -> tuple[str, str, bytes, float]:
        """The trailing parameters of every keyed statement: scope, key, fingerprint, ttl_seconds."""
        return (self.scope, self.key, self.fingerprint, ttl)


@dataclass(frozen=True, slots=True)
class Recorded:
    """The record of a key's first answer: its status and what it showed (see the migration's comments)."""

    status: int
    answer: Any


async def read(request: Request) -> Key | None:
    """The request's ``Idempotency-Key`` (None without one); 422 naming the header when malformed."""
    raw = header(request, _KEY)
    if raw is None:
        return None
    value = raw.strip()
    quoted = len(value) >= 2 and value[0] == value[-1] == '"'
    if quoted:
        value = re.sub(r"\\(.)", r"\1", value[1:-1])  # an RFC 8941 string: \" and \\ are escapes
    if not _VISIBLE.match(value) or (not quoted and ('"' in value or "\\" in value)):
        raise ValidationFailed(
            [FieldError(f"header.{HEADER}", "must be 1 to 255 visible ASCII characters, quoted or bare")]
        )
    return Key(request_caller.get() or "", value, await _fingerprint(request))


async def _fingerprint(request: Request) -> bytes:
    """What makes two requests the same request: method, path, the body as JSON (keys sorted), If-Match."""
    body = await request.body()  # already read and cached by the handler's read_json
    canonical = orjson.dumps(orjson.loads(body), option=orjson.OPT_SORT_KEYS) if body else b""
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big") + part)
    digest.update((header(request, b"if-match") or "").encode("latin-1"))
    return digest.digest()


async def run(
    db: Database, name: str, args: tuple[Any, ...], key: Key, ttl: float
) -> tuple[Any, Recorded | None]:
    """Run keyed statement ``name``: (its result, None) when it wrote now, (None, the record) for a replay.

    The record is the row (of a ``:one``, or among the rows of a ``:many``) whose ``known_status`` is set.
    """
    try:
        result = await db.run(name, *args, *key.args(ttl))
    except pg.UniqueViolationError as exc:
        return None, await replay_after_conflict(db, key, exc)
    for row in result if isinstance(result, list) else [result]:
        if row["known_status"] is not None:
            return None, _same_request(
                row["known_status"], row["known_answer"], row["known_fingerprint"], key
            )
    return result, None


def replayed(response: Response) -> Response:
    """Mark an answer rendered from a record."""
    response.headers[REPLAYED] = "true"
    return response


def _same_request(status: int, answer: Any, fingerprint: bytes, key: Key) -> Recorded:
    if bytes(fingerprint) != key.fingerprint:
        raise IdempotencyKeyReused(
            f"this {HEADER} was sent before with a different request (method, path, body or If-Match)"
        )
    return Recorded(status, answer)


async def replay_after_conflict(db: Database, key: Key, exc: pg.UniqueViolationError) -> Recorded:
    """After a keyed write failed with 23505: the record of the request that won, or re-raise.

    The winner may be a request with the same key (answered from its record) or another caller that took
    the same username or email (no record: the conflict is the answer).
    """
    row = await db.run("idempotency.get", key.scope, key.key)
    if row is not None:
        return _same_request(row["status"], row["answer"], row["fingerprint"], key)
    if getattr(exc, "constraint_name", None) == "idempotency_keys_pkey":
        raise IdempotencyKeyInFlight(f"a request with this {HEADER} is still in progress; retry") from exc
    raise exc


def user_from_record(answer: dict[str, Any]) -> dict[str, Any]:
    """A user as a keyed statement recorded it (``row_to_json``), with its timestamps as asyncpg gives them.

    The same value either way, so the answer rendered from it is the same bytes first and on a replay,
    and the same as the unkeyed path's (orjson of asyncpg's UTC datetimes).
    """
    user = dict(answer)
    for name in _TIMESTAMPS:
        user[name] = datetime.fromisoformat(user[name]).astimezone(UTC)
    return user


async def purge_expired(db: Database, *, batch: int = PURGE_BATCH, batches: int = PURGE_BATCHES) -> int:
    """Delete expired keys, ``batch`` per statement, at most ``batches`` statements; how many went."""
    purged = 0
    for _ in range(batches):
        n = int(await db.run("idempotency.purge", batch))
        purged += n
        if n < batch:
            break
    return purged


async def purge_forever(db: Database, period: float = PURGE_PERIOD) -> None:
    """`purge_expired` every ``period`` seconds, for the life of the app (a failure waits for the next)."""
    while True:
        await asyncio.sleep(period)
        try:
            if purged := await purge_expired(db):
                log.info("expired idempotency keys purged", extra={"purged": purged})
        except Exception as exc:  # the database away, say: the next run catches up
            log.warning("purging expired idempotency keys failed", extra={"error": type(exc).__name__})
