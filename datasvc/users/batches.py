"""Many users in one round trip: ``POST /api/v1/users:batchGet`` (AIP-231's shape).

One statement per call whatever the number of keys (``= any($1)``, or a join on the unnested keys for
emails), routed to a replica like the single lookups; the answer follows the order of the request, each
user once, and lists the keys no user has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from datasvc.inputs import read_json
from datasvc.responses import JSONResponse
from datasvc.routing import Operation
from datasvc.users.models import BatchGet, BatchGetResult

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from datasvc.db import Database

PREFIX = "/api/v1/users"

# The statement for each kind of key, and the column that holds the key in its rows (emails: the
# position of the key each row matched, as the database folds case, not us).
_BY_KEY: dict[str, tuple[str, str]] = {
    "ids": ("users.batch_get_by_id", "id"),
    "usernames": ("users.batch_get_by_username", "username"),
    "emails": ("users.batch_get_by_email", "position"),
}
_NOT_SHOWN = ("version", "position")


def _db(request: Request) -> Database:
    db: Database = request.scope["state"]["db"]
    return db


def _user(row: Any) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in _NOT_SHOWN}


async def batch_get(request: Request) -> Response:
    body = await read_json(request, BatchGet)
    kind, keys = body.keys()
    name, column = _BY_KEY[kind]
    rows = await _db(request).run(name, keys)
    found: dict[Any, Any] = {}
    for row in rows:
        found.setdefault(row[column], row)  # emails: a user matched by two spellings keeps the first
    # Emails are looked up by position (1-based); the others by the key itself.
    lookup = range(1, len(keys) + 1) if kind == "emails" else keys
    items: list[dict[str, Any]] = []
    missing: list[Any] = []
    seen: set[int] = set()
    for key, at in zip(keys, lookup, strict=True):
        row = found.get(at)
        if row is None:
            missing.append(key)
        elif row["id"] not in seen:
            seen.add(row["id"])
            items.append(_user(row))
    return JSONResponse({"items": items, "missing": missing})


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
)
