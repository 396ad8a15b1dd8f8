"""GET /api/v1/users/export: every user matching the listing's filters, streamed as NDJSON or CSV.

The rows are read in keyset pages of `PAGE` users in id order (sql/users/export.sql), each page one
statement on a pooled connection that goes back to the pool before the page is sent: an export never
holds a connection while the client reads, works through a transaction pooler and, page by page, from
a replica. A user present for the whole export is in exactly one page (ids never change); one created
meanwhile may or may not be, one deleted meanwhile may already have been sent. Memory is one page,
whatever the table's size. A client that goes away stops the export at once: Starlette cancels the
stream when the server reports the disconnect, whatever statement is in flight.

One export at a time per caller and worker process (`Exports`): a second is 429.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict
from starlette.responses import StreamingResponse

from datasvc.context import request_caller
from datasvc.errors import NotAcceptable, TooManyRequests
from datasvc.inputs import QueryBool, read_query
from datasvc.routing import Operation
from datasvc.users.listing import PARAMS as LIST_PARAMS
from datasvc.users.listing import SearchTerm, like_pattern
from datasvc.users.models import User, UserStatus
from datasvc.users.routes import PREFIX

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.types import Receive, Scope, Send

    from datasvc.db import Database

PAGE = 1000
NDJSON = "application/x-ndjson"
CSV = "text/csv"
COLUMNS = tuple(User.model_fields)  # the CSV's header: a user's fields, in the JSON answers' order


class ExportParams(BaseModel):
    """The listing's filters and search; no sort, no paging: the export is every match, in id order."""

    model_config = ConfigDict(extra="forbid")

    status: UserStatus | None = None
    is_verified: QueryBool | None = None
    is_admin: QueryBool | None = None
    search: SearchTerm | None = None


class Exports:
    """The callers with an export running in this process."""

    def __init__(self) -> None:
        self.running: set[str] = set()

    def take(self, caller: str) -> None:
        if caller in self.running:
            raise TooManyRequests("an export of yours is still running; one at a time")
        self.running.add(caller)

    def give_back(self, caller: str) -> None:
        self.running.discard(caller)


def negotiate(accept: str | None) -> str:
    """NDJSON or CSV, by ``Accept`` (RFC 9110 12.5.1: the most specific range decides); NDJSON by default."""
    if not accept:
        return NDJSON
    quality: dict[str, tuple[int, float]] = {}  # media type -> (specificity of the range, q)
    for item in accept.split(","):
        media, *params = (part.strip() for part in item.split(";"))
        q = 1.0
        for param in params:
            if param.lower().startswith("q="):
                try:
                    q = float(param[2:])
                except ValueError:
                    q = 0.0
        media = media.lower()
        for offered in (NDJSON, CSV):
            kind = offered.split("/")[0]
            specificity = {offered: 2, f"{kind}/*": 1, "*/*": 0}.get(media)
            if specificity is not None and specificity >= quality.get(offered, (-1, 0.0))[0]:
                quality[offered] = (specificity, q)
    best = max((NDJSON, CSV), key=lambda m: quality.get(m, (0, 0.0))[1])  # NDJSON wins a tie
    if quality.get(best, (0, 0.0))[1] <= 0:
        raise NotAcceptable(f"the export is {NDJSON} or {CSV}")
    return best


def _ndjson(rows: Sequence[Any]) -> bytes:
    return "".join(f"{row['json_line']}\n" for row in rows).encode()


def _csv_writer() -> tuple[Any, io.StringIO]:
    buffer = io.StringIO()
    return csv.writer(buffer, lineterminator="\r\n"), buffer  # RFC 4180: CRLF, quotes only where needed


def _csv_header() -> bytes:
    writer, buffer = _csv_writer()
    writer.writerow(COLUMNS)
    return buffer.getvalue().encode()


def _csv(rows: Sequence[Any]) -> bytes:
    writer, buffer = _csv_writer()
    for row in rows:
        writer.writerow(_csv_value(row[c]) for c in COLUMNS)
    return buffer.getvalue().encode()


def _csv_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value  # None is written as an empty field


async def _pages(
    db: Database, statement: str, filters: tuple[Any, ...], render: Callable[[Sequence[Any]], bytes]
) -> AsyncIterator[bytes]:
    after = 0  # ids start at 1
    while True:
        # db.run takes a connection for this statement only: none is held while the page is sent.
        rows = await db.run(statement, *filters, after, PAGE)
        if rows:
            yield render(rows)
            after = rows[-1]["id"]
        if len(rows) < PAGE:
            return


class _ExportResponse(StreamingResponse):
    """Gives the caller's export slot back however the stream ends: done, failed or the client gone."""

    def __init__(self, content: AsyncIterator[bytes], media_type: str, release: Callable[[], None]) -> None:
        super().__init__(content, media_type=media_type)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _with_header(header: bytes, body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield header
    async for chunk in body:
        yield chunk


async def export_users(request: Request) -> Response:
    params = read_query(request, ExportParams)
    media = negotiate(request.headers.get("accept"))
    state = request.scope["state"]
    db: Database = state["db"]
    exports: Exports = state["exports"]
    pattern = like_pattern(params.search) if params.search is not None else None
    filters = (params.status, params.is_verified, params.is_admin, pattern)
    if media == NDJSON:
        body = _pages(db, "users.export_json", filters, _ndjson)
        content_type = NDJSON
    else:
        body = _with_header(_csv_header(), _pages(db, "users.export_rows", filters, _csv))
        content_type = "text/csv; charset=utf-8; header=present"
    caller = request_caller.get() or ""
    exports.take(caller)
    return _ExportResponse(body, content_type, lambda: exports.give_back(caller))


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path=PREFIX + "/export",
        endpoint=export_users,
        operation_id="exportUsers",
        consistency="read",
        summary="Export every user matching the filters, streamed as NDJSON or CSV",
        description=(
            "Streamed in keyset pages, with no connection held between pages; the media type comes "
            "from Accept (406 otherwise). One export per caller at a time (429)."
        ),
        tag="users",
        media_type=NDJSON,
        params=tuple(p for p in LIST_PARAMS if p.name in ExportParams.model_fields),
        scope="users:read",
        errors=(406, 422, 429),
    ),
)
