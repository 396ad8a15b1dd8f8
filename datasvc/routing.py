"""Operations (method + path + handler + contract) and the Starlette routes built from them.

One `Operation` list feeds both the router and the OpenAPI document, so the two cannot drift. Routes are
grouped by path and dispatched by method, so a 405 lists every method the path allows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from datasvc import consistency
from datasvc.context import request_min_lsn
from datasvc.errors import MethodNotAllowed

Endpoint = Callable[[Request], Awaitable[Response]]
# Runs before the handler with the operation chosen, e.g. the bearer-token check; raises to refuse.
Guard = Callable[[Request, "Operation"], object]


@dataclass(frozen=True, kw_only=True)
class Param:
    """A path or query parameter as documented in OpenAPI."""

    name: str
    location: str  # "path" or "query"
    schema: dict[str, Any]
    description: str = ""
    required: bool = False
    # A path parameter whose value may hold "/" (sent as %2F, which the server decodes before routing):
    # the router gives it the rest of the path. Only for the last segment.
    slashes: bool = False


@dataclass(frozen=True, kw_only=True)
class Operation:
    method: str
    path: str
    endpoint: Endpoint
    operation_id: str
    summary: str
    tag: str
    status: int = 200
    request_model: type[BaseModel] | None = None
    response_model: type[BaseModel] | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    media_type: str = "application/json"  # of the success answer, as documented
    params: Sequence[Param] = ()
    errors: Sequence[int] = ()
    # Extra paths served by the same handler (the trailing-slash form): routed, not listed in OpenAPI.
    aliases: Sequence[str] = ()
    scope: str | None = None  # the caller scope the operation requires when auth is on
    # "write": a successful answer carries X-Consistency-Token; "read": honours one (datasvc.consistency).
    consistency: str | None = None


def build_routes(operations: Sequence[Operation], *, guard: Guard | None = None) -> list[Route]:
    """One Starlette route per distinct path, dispatching on method; ``guard`` vets every request."""
    by_path: dict[str, dict[str, Operation]] = {}
    for op in operations:
        for path in (op.path, *op.aliases):
            methods = by_path.setdefault(_router_path(op, path), {})
            if op.method in methods:
                raise ValueError(f"{op.method} {path} is defined twice")
            methods[op.method] = op
    return [
        Route(path, _dispatcher(methods, guard), methods=list(methods)) for path, methods in by_path.items()
    ]


def _router_path(op: Operation, path: str) -> str:
    """The path as Starlette routes it: a parameter that may hold "/" takes the rest of the path."""
    for param in op.params:
        if param.slashes:
            path = path.replace(f"{{{param.name}}}", f"{{{param.name}:path}}")
    return path


def _dispatcher(methods: dict[str, Operation], guard: Guard | None) -> Endpoint:
    table: dict[str, Endpoint] = {m: op.endpoint for m, op in methods.items()}
    if "GET" in table:
        table.setdefault("HEAD", table["GET"])
    allow = sorted(table)

    async def dispatch(request: Request) -> Response:
        endpoint = table.get(request.method)
        if endpoint is None:
            raise MethodNotAllowed(allow, f"{request.method} is not allowed here")
        operation = methods.get(request.method) or methods["GET"]
        request.scope["operation"] = operation
        if guard is not None:
            guard(request, operation)
        if operation.consistency == "write":
            response = await endpoint(request)
            await consistency.stamp(request, response)
            return response
        pinned = consistency.pin_reads(request) if operation.consistency == "read" else None
        try:
            return await endpoint(request)
        finally:
            if pinned is not None:
                request_min_lsn.reset(pinned)

    return dispatch
