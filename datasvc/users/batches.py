"""Many users in one round trip: ``POST /api/v1/users:batchGet`` and ``:batchCreate`` (AIP-231/233).

batchGet: one statement per call whatever the number of keys (a join on the unnested keys, whose rows
come in the keys' order), routed to a replica like the single lookups; the answer follows the order of
the request, each user once, and lists the keys no user has.

batchCreate: one statement (sql/users/batch_create.sql), all or nothing: it looks for every conflict
first (taken, or repeated in the batch) and inserts only if there is none, so a 409 names each
conflicting item; invalid items are a 422 naming each by index and field. With an Idempotency-Key the
answer is recorded by the same statement (`datasvc.idempotency`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from asyncpg import exceptions as pg
from starlette.responses import Response

from datasvc import idempotency, preferences
from datasvc.errors import BatchConflict, BatchInvalid, ItemError, ValidationFailed
from datasvc.inputs import read_json
from datasvc.responses import JSONResponse
from datasvc.routing import Operation
from datasvc.users.models import BatchCreate, BatchCreateResult, BatchGet, BatchGetResult
from datasvc.users.routes import IDEMPOTENCY_KEY, REPLAYED

if TYPE_CHECKING:
    from starlette.requests import Request

    from datasvc.db import Database

PREFIX = "/api/v1/users"

# The statement for each kind of key; each returns its rows in the order of the keys.
_BY_KEY: dict[str, str] = {
    "ids": "users.batch_get_by_id",
    "usernames": "users.batch_get_by_username",
    "emails": "users.batch_get_by_email",
}
# The column that holds the key itself (emails: the database folds case and form, so they match by position).
_KEY_COLUMN = {"ids": "id", "usernames": "username"}


def _db(request: Request) -> Database:
    db: Database = request.scope["state"]["db"]
    return db


async def batch_get(request: Request) -> Response:
    body = await read_json(request, BatchGet)
    kind, keys = body.keys()
    rows = await _db(request).run(_BY_KEY[kind], keys)
    items: list[dict[str, Any]]
    missing: list[Any] = []
    if kind == "emails":
        items, missing = _by_position(rows, keys)
    else:
        # Each key once and unique in the table: each row is another user, already in request order.
        items = [dict(row) for row in rows]
        if len(rows) < len(keys):
            found = {row[_KEY_COLUMN[kind]] for row in rows}
            missing = [key for key in keys if key not in found]
    return JSONResponse({"items": items, "missing": missing})


def _by_position(rows: list[Any], keys: list[Any]) -> tuple[list[dict[str, Any]], list[Any]]:
    """Users matched by emails, each once (two spellings of one address match the same user), and the
    emails nothing matched; ``rows`` carry the 1-based position of the key they matched, in that order."""
    items: list[dict[str, Any]] = []
    seen: set[int] = set()
    matched: set[int] = set()
    for row in rows:
        user = dict(row)
        matched.add(user.pop("position"))
        if user["id"] not in seen:
            seen.add(user["id"])
            items.append(user)
    return items, [key for at, key in enumerate(keys, 1) if at not in matched]


_ITEM_FIELD = re.compile(r"^body\.users\.(\d+)\.(\w+)$")


def _by_item(exc: ValidationFailed) -> ValidationFailed | BatchInvalid:
    """Errors inside items as ``{index, field, reason}``; an error of the body itself stays as it is."""
    items = [(_ITEM_FIELD.match(e.field), e.reason) for e in exc.errors]
    if not all(match for match, _ in items):
        return exc
    return BatchInvalid([ItemError(int(m[1]), m[2], reason) for m, reason in items if m])


async def batch_create(request: Request) -> Response:
    try:
        body = await read_json(request, BatchCreate)
    except ValidationFailed as exc:
        raise _by_item(exc) from None
    users = body.users
    args = (
        [u.email for u in users],
        [u.username for u in users],
        [u.hashed_password for u in users],
        [u.full_name for u in users],
        [u.bio for u in users],
    )
    key = await idempotency.read(request)
    try:
        rows, recorded = await _insert(request, args, key)
    except pg.UniqueViolationError:
        # Another writer took a username or email after the statement's snapshot (it checks first, in
        # that snapshot); run it again: its snapshot now sees that user and names the item.
        rows, recorded = await _insert(request, args, key)
    if recorded is not None:
        return idempotency.replayed(_created(request, recorded.answer))
    if clashes := [ItemError(r["ordinal"] - 1, r["field"], r["reason"]) for r in rows if r["field"]]:
        raise BatchConflict(clashes)
    return _created(request, [r["answer"] for r in rows])


async def _insert(
    request: Request, args: tuple[list[Any], ...], key: idempotency.Key | None
) -> tuple[Any, idempotency.Recorded | None]:
    db = _db(request)
    if key is None:
        return await db.run("users.batch_create", *args, None, None, None, None), None
    ttl: float = request.scope["state"]["settings"].idempotency_ttl
    return await idempotency.run(db, "users.batch_create", args, key, ttl)


def _created(request: Request, answers: list[dict[str, Any]]) -> Response:
    if preferences.minimal(request):
        return Response(status_code=201, headers={preferences.APPLIED: "return=minimal"})
    items = []
    for answer in answers:
        user = idempotency.user_from_record(answer)
        del user["version"]
        items.append(user)
    return JSONResponse({"items": items}, status_code=201)


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="POST",
        path=PREFIX + ":batchGet",
        endpoint=batch_get,
        operation_id="batchGetUsers",
        consistency="read",
        summary="Get up to 1000 users by id, username or email in one call",
        description=(
            "One statement for the whole batch, in request order; a key given twice is answered once, "
            "and keys with no user are listed as missing."
        ),
        tag="users",
        request_model=BatchGet,
        response_model=BatchGetResult,
        scope="users:read",
        errors=(400, 413, 415, 422),
    ),
    Operation(
        method="POST",
        path=PREFIX + ":batchCreate",
        endpoint=batch_create,
        operation_id="batchCreateUsers",
        consistency="write",
        summary="Create up to 1000 users in one call, all or none",
        description=(
            "One statement inserts every user or none. A conflict answers 409 `batch-conflict` listing "
            "every conflicting item (`errors[].index`, `field`, `reason`: `taken`, or `repeated in this "
            "batch`, compared as the unique indexes compare); an invalid item answers 422 "
            "`batch-invalid` in the same shape. The users come back in request order. Send "
            "`Idempotency-Key` to retry safely, `Prefer: return=minimal` for no body."
        ),
        tag="users",
        status=201,
        minimal=201,
        request_model=BatchCreate,
        response_model=BatchCreateResult,
        response_headers=REPLAYED,
        params=(IDEMPOTENCY_KEY,),
        scope="users:write",
        errors=(400, 409, 413, 415, 422),
    ),
)
