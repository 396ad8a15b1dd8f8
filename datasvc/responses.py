"""orjson-encoded JSON and RFC 9457 problem+json responses."""

from __future__ import annotations

import http
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

from datasvc.errors import DatasvcError

PROBLEM_MEDIA_TYPE = "application/problem+json"


class JSONResponse(Response):
    """JSON via orjson: asyncpg records arrive as dicts and datetimes leave as RFC 3339."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)

    def init_headers(self, headers: Mapping[str, str] | None = None) -> None:
        """Starlette's, minus its checks for what a JSON body never needs (charset, a header overriding
        Content-Length or Content-Type, a bodiless status): on every lookup's path."""
        if self.media_type != "application/json" or self.status_code in (204, 304) or self.status_code < 200:
            super().init_headers(headers)
            return
        raw = (
            [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
            if headers
            else []
        )
        for name, _ in raw:
            if name in (b"content-length", b"content-type"):
                super().init_headers(headers)
                return
        raw.append((b"content-length", b"%d" % len(self.body)))
        raw.append((b"content-type", b"application/json"))
        self.raw_headers = raw


def problem_response(error: DatasvcError, *, instance: str, request_id: str | None) -> Response:
    """The problem+json body for ``error``: type, title, status, detail, instance, request id, extensions."""
    body: dict[str, Any] = {
        "type": error.type,
        "title": error.title,
        "status": error.status,
        "detail": error.detail or error.title,
        "instance": instance,
    }
    if request_id:
        body["request_id"] = request_id
    body.update(error.extensions())
    response = ProblemResponse(
        orjson.dumps(body),
        status_code=error.status,
        headers=error.headers(),
        media_type=PROBLEM_MEDIA_TYPE,
    )
    response.slug = error.slug
    return response


class ProblemResponse(Response):
    """A problem+json answer that leaves its type's slug in the request's state, for the metrics."""

    slug = ""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope.setdefault("state", {})["problem"] = self.slug
        await super().__call__(scope, receive, send)


async def send_problem(scope: Scope, send: Send, error: DatasvcError) -> None:
    """Answer from ASGI middleware, before or instead of the app: the request body is not read."""
    request_id = scope.get("state", {}).get("request_id")
    await problem_response(error, instance=scope["path"], request_id=request_id)(scope, _disconnected, send)


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


def raw_problem(
    error: DatasvcError,
    *,
    request_id: str,
    headers: Iterable[tuple[bytes, bytes]] = (),
    close: bool = True,
) -> bytes:
    """A whole HTTP/1.1 problem answer as bytes, for the protocol to write below the app.

    ``close``: the answer says ``Connection: close`` (the protocol then closes the connection).

    ``headers`` are the server's own (uvicorn's ``Date``); the error's (``Retry-After``) follow.
    """
    body = orjson.dumps(
        {
            "type": error.type,
            "title": error.title,
            "status": error.status,
            "detail": error.detail or error.title,
            "request_id": request_id,
        }
    )
    lines = [b"HTTP/1.1 %d %s\r\n" % (error.status, http.HTTPStatus(error.status).phrase.encode())]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    lines += [
        f"{name.lower()}: {value}\r\n".encode("latin-1")
        for name, value in error.headers().items()
        if name.lower() != "connection"
    ]
    lines.append(
        b"content-type: %s\r\ncontent-length: %d\r\nx-request-id: %s\r\n%s\r\n"
        % (
            PROBLEM_MEDIA_TYPE.encode(),
            len(body),
            request_id.encode(),
            b"connection: close\r\n" if close else b"",
        )
    )
    return b"".join(lines) + body
