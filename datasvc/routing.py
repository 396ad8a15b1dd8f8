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
from starlette.routing import BaseRoute, Match, Route, Router, compile_path
from starlette.types import Receive, Scope, Send

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
    description: str = ""  # what the summary leaves out: how it behaves, what to send back
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
    # "write": a successful answer carries X-Consistency-Token; "read": honours one. Declared here for the
    # OpenAPI document; `datasvc.consistency.apply` wraps the endpoints when the app is wired.
    consistency: str | None = None
    # The status of its answer to `Prefer: return=minimal` (headers, no body); None: always the full one.
    minimal: int | None = None


def build_routes(operations: Sequence[Operation], *, guard: Guard | None = None) -> list[Route]:
    """One Starlette route per distinct path, dispatching on method; ``guard`` vets every request."""
    by_path: dict[str, dict[str, Operation]] = {}
    for op in operations:
        for path in (op.path, *op.aliases):
            methods = by_path.setdefault(_router_path(op, path), {})
            if op.method in methods:
                raise ValueError(f"{op.method} {path} is defined twice")
            methods[op.method] = op
    # Starlette tries routes in order: the lookups (a path with a parameter) first, where a request has
    # the fewest patterns to try before its own, except a fixed path a lookup would take
    # (`/api/v1/users/changes` is also `/api/v1/users/{id}`), which goes before them all.
    lookups = [compile_path(path)[0] for path in by_path if "{" in path]

    def order(path: str) -> int:
        if "{" in path:
            return 1
        return 0 if any(pattern.match(path) for pattern in lookups) else 2

    # A fixed path a lookup would take answers every method itself (405 with Allow for the others), so
    # `PATCH /api/v1/users/changes` is not passed on to the lookup as user "changes".
    ordered = sorted(by_path.items(), key=lambda item: order(item[0]))
    return [
        Route(path, _dispatcher(methods, guard), methods=None if order(path) == 0 else list(methods))
        for path, methods in ordered
    ]


def _router_path(op: Operation, path: str) -> str:
    """The path as Starlette routes it: a parameter that may hold "/" takes the rest of the path."""
    for param in op.params:
        if param.slashes:
            path = path.replace(f"{{{param.name}}}", f"{{{param.name}:path}}")
    return path


def _dispatcher(methods: dict[str, Operation], guard: Guard | None) -> _Dispatch:
    table: dict[str, tuple[Operation, Endpoint]] = {m: (op, op.endpoint) for m, op in methods.items()}
    if "GET" in table:
        table.setdefault("HEAD", table["GET"])
    return _Dispatch(table, guard)


class _Dispatch:
    """The ASGI app of one path: picks the method's operation, vets it with the guard, answers.

    An ASGI app rather than a ``request -> response`` function, which Starlette would wrap per request in
    ``request_response``: a second `Request`, three closures and a second exception-handling layer, all
    already done once by the app's ``ExceptionMiddleware`` (whose handlers answer what is raised here).
    """

    __slots__ = ("allow", "guard", "table")

    def __init__(self, table: dict[str, tuple[Operation, Endpoint]], guard: Guard | None) -> None:
        self.table = table
        self.guard = guard
        self.allow = sorted(table)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        found = self.table.get(request.method)
        if found is None:
            raise MethodNotAllowed(self.allow, f"{request.method} is not allowed here")
        operation, endpoint = found
        scope["operation"] = operation
        if self.guard is not None:
            self.guard(request, operation)
        response = await endpoint(request)
        await response(scope, receive, send)


class IndexedRouter(Router):
    """Starlette's router, answering what it would answer with fewer patterns tried per request.

    Starlette tries every route's pattern in order. Here a fixed path (no parameter) is found in a dict,
    and a route with parameters is tried only when the path starts with the text before its first
    parameter (its pattern could not match otherwise). The outcome is the same as trying them all in
    order, given how `build_routes` orders them: a fixed path that a parameter route would also take
    comes first and takes every method, and no parameter route matches the other fixed paths (checked at
    start-up by `_check_fixed`). Redirects
    (``redirect_slashes``) and a ``root_path`` go through Starlette's own loop.
    """

    def __init__(self, routes: Sequence[BaseRoute], **kwargs: Any) -> None:
        super().__init__(list(routes), redirect_slashes=False, **kwargs)
        self._fixed: dict[str, BaseRoute] = {}
        self._patterns: list[tuple[str, BaseRoute]] = []
        for i, route in enumerate(self.routes):
            if isinstance(route, Route) and not route.param_convertors:
                _check_fixed(route, i, self.routes)
                self._fixed.setdefault(route.path, route)
            else:
                path = getattr(route, "path", "")
                self._patterns.append((path.split("{", 1)[0], route))

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.redirect_slashes or scope.get("root_path"):
            await super().app(scope, receive, send)  # a mounted app's paths: Starlette's own way
            return
        if "router" not in scope:
            scope["router"] = self
        path: str = scope["path"]
        fixed = self._fixed.get(path)
        candidates = ((path, fixed),) if fixed is not None else self._patterns
        partial: tuple[BaseRoute, Scope] | None = None
        for prefix, route in candidates:
            if not path.startswith(prefix):
                continue
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                scope["route"] = route
                scope.update(child_scope)
                await route.handle(scope, receive, send)
                return
            if match is Match.PARTIAL and partial is None:
                partial = (route, child_scope)
        if partial is not None:  # the path is served, not with this method: the route answers 405
            scope["route"] = partial[0]
            scope.update(partial[1])
            await partial[0].handle(scope, receive, send)
            return
        await self.default(scope, receive, send)


def _check_fixed(route: Route, at: int, routes: Sequence[BaseRoute]) -> None:
    """Refuse an order in which Starlette would send a request for ``route``'s path to another route."""
    for i, other in enumerate(routes):
        if not (isinstance(other, Route) and other.param_convertors and other.path_regex.match(route.path)):
            continue
        if i < at:
            raise ValueError(f"{route.path} comes after {other.path}, which takes it: put it first")
        if route.methods is not None:
            raise ValueError(f"{route.path} takes only some methods, and {other.path} the others: take all")
