"""GET /api/v1/users: filtered, sorted pages by offset (with a total) or by signed keyset cursor.

One registry statement per sort key and SQL direction (``users.list__<sort>_<asc|desc>``, expanded from
``sql/users/list.sql``) serves both modes; each page is one round trip. A walk backwards (a ``prev``
cursor) runs the opposite direction's statement and reverses the rows it gets.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from itertools import islice
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from datasvc.errors import FieldError, ValidationFailed
from datasvc.inputs import NFC, QueryBool, QueryInt, SafeStr, read_query
from datasvc.pagination import Cursor, CursorCodec, InvalidCursor, binding_digest
from datasvc.responses import JSONResponse
from datasvc.routing import Operation, Param
from datasvc.settings import Settings
from datasvc.users.models import User, UserStatus, _without_null
from datasvc.users.routes import PREFIX

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

SortKey = Literal["created_at", "updated_at", "username", "email", "full_name", "id"]
SortOrder = Literal["asc", "desc"]
CountMode = Literal["exact", "estimated", "none"]
TotalKind = Literal["exact", "estimated"]
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_SEARCH = 100
TRIGRAM = 3  # shorter search terms have no trigram: no index can find them


def _no_control(value: str) -> str:
    # The search runs over username, email and full_name joined by chr(31) (sql/users/list.sql): a term
    # without control characters can never match across two fields.
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain control characters")
    return value


SearchTerm = Annotated[SafeStr, Field(min_length=1, max_length=MAX_SEARCH), NFC, AfterValidator(_no_control)]


class ListParams(BaseModel):
    """The query string; unknown or repeated parameters are refused rather than ignored."""

    model_config = ConfigDict(extra="forbid")

    limit: QueryInt = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    offset: QueryInt | None = Field(None, ge=0)
    sort_by: SortKey = "created_at"
    sort_order: SortOrder = "desc"
    status: UserStatus | None = None
    is_verified: QueryBool | None = None
    is_admin: QueryBool | None = None
    search: SearchTerm | None = None
    count: CountMode | None = None
    cursor: Annotated[str, Field(min_length=1)] | None = None

    def binding(self) -> list[Any]:
        """What a cursor is only valid with: the order and every filter."""
        return [self.sort_by, self.sort_order, self.status, self.is_verified, self.is_admin, self.search]


def _absent_unless_counted(schema: dict[str, Any]) -> None:
    """The key is left out, never null: no ``null`` in its schema, and no ``default`` to claim one."""
    _without_null(schema)
    schema.pop("default", None)


class UserPage(BaseModel):
    """A page of users: the response is built as a dict straight from the rows; this model documents it."""

    items: list[User]
    total: int | None = Field(
        None,
        ge=0,
        json_schema_extra=_absent_unless_counted,
        description="How many users match the filters. Present only when `count` is `exact` or `estimated` "
        "(by default on offset pages; left out of keyset pages and of `count=none`).",
    )
    total_kind: TotalKind | None = Field(
        None,
        json_schema_extra=_absent_unless_counted,
        description="Present with `total`: `exact` (counted) or `estimated` (the planner's estimate, given "
        "for a search matching more than 1,000 users when `count=estimated`).",
    )
    limit: int
    offset: int | None = Field(description="The offset asked for; null on a page reached by cursor.")
    has_next: bool
    has_prev: bool
    next_cursor: str | None = Field(description="Pass as `cursor` for the following page; null on the last.")
    prev_cursor: str | None = Field(description="Pass as `cursor` for the page before; null on the first.")


def parse_params(request: Request, max_offset: int) -> ListParams:
    """Validate the query string into `ListParams`, or a 422 naming every bad ``query.*`` parameter."""
    params = read_query(request, ListParams)
    if params.offset is not None and params.offset > max_offset:
        raise ValidationFailed([FieldError("query.offset", f"must be at most {max_offset}; use the cursors")])
    if params.cursor is not None and params.offset is not None:
        raise ValidationFailed([FieldError("query.offset", "cannot be combined with cursor")])
    return params


def like_pattern(term: str) -> str:
    """``%term%`` for LIKE, with ``\\``, ``%`` and ``_`` in the term matching themselves."""
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def sort_key(row: dict[str, Any], sort_by: SortKey) -> list[Any]:
    """The cursor key of a row: its sort value (JSON-ready) and its id."""
    value = row[sort_by]
    if isinstance(value, datetime):
        value = value.isoformat()
    elif sort_by == "full_name":
        value = [value]  # the statement's key is ARRAY[full_name]
    return [value, row["id"]]


def key_params(key: Any, sort_by: SortKey) -> tuple[Any, int]:
    """A verified cursor's key as the statement's typed parameters (``cursor_key``, ``cursor_id``)."""
    try:
        value, row_id = key
        if not isinstance(row_id, int) or isinstance(row_id, bool):
            raise TypeError
        if sort_by in ("created_at", "updated_at"):
            parsed = datetime.fromisoformat(value)
            if parsed.tzinfo is None:
                raise TypeError
            return parsed, row_id
        if sort_by == "id":
            if value != row_id:
                raise TypeError
            return row_id, row_id
        if sort_by == "full_name":
            (name,) = value
            if name is not None and not isinstance(name, str):
                raise TypeError
            return [name], row_id
        if not isinstance(value, str):
            raise TypeError
        return value, row_id
    except (TypeError, ValueError):
        raise InvalidCursor("does not hold a position for this sort") from None


async def list_users(request: Request) -> Response:
    settings: Settings = request.scope["state"]["settings"]
    codec: CursorCodec = request.scope["state"]["cursors"]  # built once by create_app from the cursor secret
    params = parse_params(request, settings.list_max_offset)
    bound = binding_digest(params.binding())
    cursor = codec.decode(params.cursor, bound) if params.cursor is not None else None
    forwards = cursor is None or cursor.direction == "next"
    rows = await request.scope["state"]["db"].run(*_statement(params, cursor, forwards))
    # Every row starts with the total and its kind (NULL with count=none; the page's columns are NULL
    # when it is empty): the keys are left out rather than sent as null.
    first = rows[0]
    counted = {"total": first["total"], "total_kind": first["total_kind"]} if first["total_kind"] else {}
    items = [dict(islice(row.items(), 2, None)) for row in rows if row["id"] is not None]
    page = _envelope(params, cursor, forwards, items, counted, lambda c: codec.encode(c, bound))
    return JSONResponse(page)


def _statement(params: ListParams, cursor: Cursor | None, forwards: bool) -> tuple[Any, ...]:
    """The registry name and arguments of the one statement that answers this page."""
    sql_order = params.sort_order if forwards else ("desc" if params.sort_order == "asc" else "asc")
    cursor_key, cursor_id = key_params(cursor.key, params.sort_by) if cursor else (None, None)
    offset = 0 if cursor else (params.offset or 0)
    count = params.count or ("none" if cursor else "exact")
    pattern = like_pattern(params.search) if params.search is not None else None
    filters = (params.status, params.is_verified, params.is_admin, pattern)
    page_args = (params.limit + 1, offset, cursor_key, cursor_id)  # limit + 1: is there a page beyond?
    if params.search is not None and count == "exact" and len(params.search) >= TRIGRAM:
        # Count and page from one trigram index scan (see sql/users/list_search.sql).
        return (f"users.list_search__{params.sort_by}_{sql_order}", *filters, *page_args)
    return (f"users.list__{params.sort_by}_{sql_order}", *filters, count, *page_args)


def _envelope(
    params: ListParams,
    cursor: Cursor | None,
    forwards: bool,
    items: list[dict[str, Any]],
    counted: dict[str, Any],
    encode: Callable[[Cursor], str],
) -> dict[str, Any]:
    """The response: items in the asked order, the total if counted, whether there is more, the cursors."""
    more = len(items) > params.limit
    del items[params.limit :]
    if not forwards:
        items.reverse()
    offset = None if cursor else (params.offset or 0)
    if cursor is None:
        has_next, has_prev = more, bool(offset)
    else:
        has_next, has_prev = (more, True) if forwards else (True, more)
    by = params.sort_by
    next_cursor = encode(Cursor("next", sort_key(items[-1], by))) if has_next and items else None
    prev_cursor = encode(Cursor("prev", sort_key(items[0], by))) if has_prev and items else None
    if cursor is not None and not items:
        # Everything past the cursor's row went away meanwhile: turn around at that same position.
        turn = encode(Cursor("prev" if forwards else "next", cursor.key))
        next_cursor, prev_cursor = (None, turn) if forwards else (turn, None)
        has_next, has_prev = not forwards, forwards
    return {
        "items": items,
        **counted,
        "limit": params.limit,
        "offset": offset,
        "has_next": has_next,
        "has_prev": has_prev,
        "next_cursor": next_cursor,
        "prev_cursor": prev_cursor,
    }


def _query(name: str, schema: dict[str, Any], description: str) -> Param:
    return Param(name=name, location="query", schema=schema, description=description)


PARAMS: tuple[Param, ...] = (
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "Users per page.",
    ),
    _query(
        "offset",
        # The documented bound is the default; a deployment that lowers it answers 422 above its own.
        {"type": "integer", "minimum": 0, "maximum": Settings.list_max_offset},
        "Rows to skip (offset mode); at most DATASVC_LIST_MAX_OFFSET. Not with `cursor`.",
    ),
    _query("sort_by", {"enum": list(get_args(SortKey)), "default": "created_at"}, "`id` breaks ties."),
    _query("sort_order", {"enum": ["asc", "desc"], "default": "desc"}, "NULL full_name sorts as largest."),
    _query("status", {"enum": list(get_args(UserStatus))}, "Only users with this status."),
    _query("is_verified", {"type": "boolean"}, "Only verified (`true`) or unverified (`false`) users."),
    _query("is_admin", {"type": "boolean"}, "Only administrators (`true`) or only the others (`false`)."),
    _query(
        "search",
        # The pattern tells OpenAPI readers what _no_control refuses.
        {"type": "string", "minLength": 1, "maxLength": MAX_SEARCH, "pattern": r"^[^\x00-\x1f\x7f]*$"},
        "Case-insensitive substring of username, email or full_name; `%`, `_` and `\\` match literally.",
    ),
    _query(
        "count",
        {"enum": list(get_args(CountMode))},
        "`exact`: `total` counted (without `search`, read from counts the database keeps, at no cost); "
        "`estimated`: counted up to 1,000 matches, beyond that the planner's estimate (`total_kind` says "
        "which); `none`: no `total` key. Default `exact` without a cursor, `none` with one.",
    ),
    _query(
        "cursor",
        {"type": "string", "minLength": 1},
        "`next_cursor` or `prev_cursor` of a previous page, with the same sort and filters.",
    ),
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path=PREFIX,
        aliases=(PREFIX + "/",),
        endpoint=list_users,
        operation_id="listUsers",
        consistency="read",
        summary="List users: filters, sorts, offset pages with a total, keyset cursors",
        description=(
            "One statement per page: filters (status, flags, search), a closed set of sort keys, "
            "offset pages with an exact or estimated total, or signed keyset cursors (next_cursor, "
            "prev_cursor) for deep pages."
        ),
        tag="users",
        response_model=UserPage,
        params=PARAMS,
        scope="users:read",
        errors=(422,),
    ),
)
