"""Request bodies, read whole within ``DATASVC_BODY_TIMEOUT`` before the request goes any further.

A body that trickles in (a POST head with ``Content-Length: 1000``, then a byte every two seconds) must
not hold what the service has few of: it is read here, outside the in-flight slots of `datasvc.limits`,
and the handler gets it at once from memory. The whole body counts, from the end of the head: past the
timeout the caller gets 408 problem+json and ``Connection: close`` (the rest of its body can no longer
be told apart from a next request). Bodies are small (``DATASVC_MAX_BODY_BYTES``, enforced by the
request middleware as the bytes arrive), so holding one in memory costs what uvicorn buffers anyway.

A caller that closes its connection before its body is complete raises `ClientDisconnect`, which the
request middleware logs and counts as ``client-closed``, not as an error of ours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datasvc.errors import DatasvcError, RequestTimeout
from datasvc.responses import send_problem

_BODILESS = frozenset({"GET", "HEAD"})


class BodyMiddleware:
    """Read the request body within ``timeout`` seconds, then call the app with it replayed."""

    def __init__(self, app: ASGIApp, *, timeout: float, on_timeout: Callable[[], None] | None = None) -> None:
        self.app = app
        self.timeout = timeout
        self.on_timeout = on_timeout  # metrics: the `body-timeout` count

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A GET's handler never reads a body, so one sent anyway never holds a slot: not looked for.
        if scope["type"] != "http" or scope["method"] in _BODILESS or not _has_body(scope["headers"]):
            await self.app(scope, receive, send)
            return
        try:
            async with asyncio.timeout(self.timeout):
                body = await _read(receive)
        except TimeoutError:
            if self.on_timeout is not None:
                self.on_timeout()
            error = RequestTimeout(f"the request body did not arrive within {self.timeout:g} s")
            await send_problem(scope, send, error)
            return
        except DatasvcError as error:  # over DATASVC_MAX_BODY_BYTES, counted as it arrived
            await send_problem(scope, send, error)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # an app asking for more waits for the disconnect, as before
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _read(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _has_body(headers: list[tuple[bytes, bytes]]) -> bool:
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() not in (b"0", b"")):
            return True
    return False
