"""GET /api/v1/users/changes: the audit trail as a feed that hands out every committed change exactly once.

A position in the trail is (xid, seq): the writing transaction and the row's order within it (migration
0015). A page is the trail strictly after the caller's position, read only below the xmin of the
statement's snapshot (sql/users/changes.sql): every transaction below it has ended, so nothing can
still appear behind a position once it has been handed out, however late a transaction commits.

Order: transactions in the order of their ids (the order in which they first wrote), each one's changes
together, in the order it made them. Per user, the versions grow along the feed, with one exception: a
transaction that took its id (by writing another row first) before it waited for the user's row lock
comes before the transaction it waited for. Every item carries the user's version after it: a consumer
keeps, per user, the highest version it has seen.

``next_cursor`` signs the position with the listing's cursor codec; a page that reached the end moves it
up to the snapshot's xmin. A position behind the purge horizon has lost changes: 410 cursor-expired.
``wait`` makes an empty answer wait for the next change (`datasvc.listener`), with no connection held.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from datasvc.errors import CursorExpired, FieldError, ValidationFailed
from datasvc.inputs import QueryInt, read_query
from datasvc.listener import PENDING_POLL
from datasvc.pagination import Cursor, InvalidCursor, binding_digest
from datasvc.responses import JSONResponse
from datasvc.routing import Operation, Param
from datasvc.users.routes import PREFIX

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from datasvc.db import Database
    from datasvc.drain import Drain
    from datasvc.listener import Listener
    from datasvc.pagination import CursorCodec

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
MAX_WAIT = 30
_BOUND = binding_digest(["users.changes"])  # a listing cursor is refused here, and the other way round

Position = tuple[int, int]  # (xid, seq)


class ChangesParams(BaseModel):
    """The query string; unknown or repeated parameters are refused rather than ignored."""

    model_config = ConfigDict(extra="forbid", populate_by_name=False)

    after: str | None = Field(None, min_length=1)
    limit: QueryInt = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    wait: QueryInt = Field(0, ge=0, le=MAX_WAIT)
    start: Literal["now"] | None = Field(None, alias="from")


class Change(BaseModel):
    """One change of one user, as the audit trail recorded it."""

    op: Literal["create", "update", "delete"]
    id: int = Field(description="The user's id.")
    version: int = Field(description="The user's version after the change (a delete: one past the last).")
    at: datetime = Field(description="When the writing statement started.")
    caller: str = Field(
        description="application_name of the writer: `datasvc:<caller>` for a service caller."
    )
    changed: dict[str, Any] | None = Field(
        description="Updates only: `{column: {old, new}}` for each column that changed; `hashed_password` "
        "appears as `{}`, never with a value. Null for create and delete."
    )


class ChangesPage(BaseModel):
    items: list[Change]
    next_cursor: str = Field(description="Pass as `after` for the changes that follow; always present.")


def _position(codec: CursorCodec, token: str) -> Position:
    key = codec.decode(token, _BOUND).key
    if len(key) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in key):
        raise InvalidCursor("is not a change-feed cursor")
    return key[0], key[1]


async def list_changes(request: Request) -> Response:
    params = read_query(request, ChangesParams)
    if params.after is not None and params.start is not None:
        raise ValidationFailed([FieldError("query.from", "cannot be combined with after")])
    state = request.scope["state"]
    db: Database = state["db"]
    listener: Listener = state["listener"]
    drain: Drain = state["drain"]
    codec: CursorCodec = state["cursors"]
    position = _position(codec, params.after) if params.after is not None else None
    if params.start == "now":
        position = (int((await db.run("users.changes", None, None, 0))[0]["below"]), 0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + params.wait
    while True:
        woken = listener.token()
        page, position, pending = await _read(db, position, params.limit)
        left = deadline - loop.time()
        if page or left <= 0 or drain.draining:
            break
        await listener.wait(woken, min(left, PENDING_POLL if pending else listener.poll))
    next_cursor = codec.encode(Cursor("next", list(position)), _BOUND)
    return JSONResponse({"items": page, "next_cursor": next_cursor})


async def _read(
    db: Database, position: Position | None, limit: int
) -> tuple[list[dict[str, Any]], Position, bool]:
    """One page after ``position`` (None: from the oldest retained), the position after it, and whether
    committed changes wait behind a running transaction."""
    xid, seq = (str(position[0]), position[1]) if position is not None else (None, None)
    rows = await db.run("users.changes", xid, seq, limit)
    first = rows[0]
    horizon = (int(first["horizon_xid"]), first["horizon_seq"])
    if position is not None and position < horizon:
        raise CursorExpired(
            "changes after this cursor were purged (older than DATASVC_CHANGES_RETENTION); "
            "start again without `after`"
        )
    found = sorted((int(row["xid"]), row["seq"], row) for row in rows if row["xid"] is not None)
    page = [
        {
            "op": row["op"],
            "id": row["id"],
            "version": row["version_after"],
            "at": row["changed_at"],
            "caller": row["caller"],
            "changed": row["changed"],
        }
        for _, _, row in found
    ]
    after = found[-1][:2] if found else (position or horizon)
    if len(page) < limit:
        # Everything below the snapshot's xmin has been read: nothing can appear there any more.
        after = max(after, (int(first["below"]), 0))
    return page, after, bool(first["pending"])


def _query(name: str, schema: dict[str, Any], description: str) -> Param:
    return Param(name=name, location="query", schema=schema, description=description)


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path=PREFIX + "/changes",
        endpoint=list_changes,
        operation_id="listUserChanges",
        summary="Follow changes to users: every committed change once, in transaction order",
        description=(
            "The audit trail as a feed: pass the last cursor to get what committed after it; `wait` "
            "long-polls until a change arrives. A cursor older than the retention is 410."
        ),
        tag="users",
        response_model=ChangesPage,
        params=(
            _query(
                "after",
                {"type": "string", "minLength": 1},
                "`next_cursor` of the previous answer. Absent: from the oldest retained change.",
            ),
            _query(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
                "Changes per page.",
            ),
            _query(
                "wait",
                {"type": "integer", "minimum": 0, "maximum": MAX_WAIT, "default": 0},
                "Seconds to wait for a change when there is none yet (long poll).",
            ),
            _query("from", {"enum": ["now"]}, "`now`: only changes from now on (not with `after`)."),
        ),
        scope="changes:read",
        errors=(410, 422),
    ),
)
