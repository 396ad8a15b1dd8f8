"""`routing.IndexedRouter` answers exactly what Starlette's router answers, on the service's own routes."""

from __future__ import annotations

import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route, Router
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from datasvc.app import operations
from datasvc.routing import IndexedRouter, build_routes

PATHS = (
    "/api/v1/users/1",
    "/api/v1/users/abc",
    "/api/v1/users/1/more",
    "/api/v1/users/by_username/alice",
    "/api/v1/users/by_email/alice%40example.com",
    "/api/v1/users/by_email/a/b",
    "/api/v1/users/changes",
    "/api/v1/users/export",
    "/api/v1/users",
    "/api/v1/users/",
    "/api/v1/users:batchGet",
    "/api/v1/users:batchCreate",
    "/api/v1/auth/lookup",
    "/health",
    "/health/ready",
    "/metrics",
    "/docs",
    "/docs/swagger-ui.css",
    "/nope",
    "/",
)
METHODS = ("GET", "POST", "PATCH", "DELETE", "PUT")


class _Echo:
    """An ASGI app answering its route's path template (an app, as the service's dispatchers are: a route
    given no methods then takes every method)."""

    def __init__(self, template: str) -> None:
        self.template = template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await PlainTextResponse(self.template)(scope, receive, send)


def _echoing() -> list[Route]:
    """The service's routes in its order and with its methods, each answering with its path template."""
    return [Route(r.path, _Echo(r.path), methods=r.methods) for r in build_routes(operations())]


@pytest.mark.parametrize("method", METHODS)
def test_every_path_reaches_the_route_starlette_would_choose(method: str) -> None:
    routes = _echoing()
    with (
        TestClient(Router(routes, redirect_slashes=False)) as plain,
        TestClient(IndexedRouter(routes)) as fast,
    ):
        for path in PATHS:
            want = plain.request(method, path)
            got = fast.request(method, path)
            assert (got.status_code, got.text) == (want.status_code, want.text), f"{method} {path}"


def test_a_fixed_path_after_a_parameter_route_that_takes_it_is_refused() -> None:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("")

    with pytest.raises(ValueError, match=r"/users/changes comes after /users/\{id\}"):
        IndexedRouter([Route("/users/{id}", endpoint), Route("/users/changes", endpoint)])


def test_a_fixed_path_a_parameter_route_would_take_must_take_every_method() -> None:
    async def endpoint(request: Request) -> Response:
        return PlainTextResponse("")

    routes = [Route("/users/changes", endpoint, methods=["GET"]), Route("/users/{id}", endpoint)]
    with pytest.raises(ValueError, match="takes only some methods"):
        IndexedRouter(routes)
