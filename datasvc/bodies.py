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
from starlette.types import Message, Receive, Scope, Send

from datasvc.errors import DatasvcError, RequestTimeout
from datasvc.responses import send_problem

_BODILESS = frozenset({"GET", "HEAD"})


class BodyReader:
    """Read a request's body within ``timeout`` seconds; the app then gets it replayed from memory.

    Called by the in-flight limit (`datasvc.limits.ConcurrencyLimitMiddleware`) before it takes a slot:
    one middleware layer, not two, on every request's path.
    """

    __slots__ = ("on_timeout", "timeout")

    def __init__(self, *, timeout: float, on_timeout: Callable[[], None] | None = None) -> None:
        self.timeout = timeout
        self.on_timeout = on_timeout  # metrics: the `body-timeout` count

    @staticmethod
    def expects(scope: Scope) -> bool:
        """Whether the request has a body to read (a GET's handler never reads one: not looked for)."""
        return scope["method"] not in _BODILESS and _has_body(scope["headers"])

    async def read(self, scope: Scope, receive: Receive, send: Send) -> Receive | None:
        """The body as a replaying ``receive``; None when the caller was answered (408, 413) instead."""
        try:
            async with asyncio.timeout(self.timeout):
                body = await _read(receive)
        except TimeoutError:
            if self.on_timeout is not None:
                self.on_timeout()
            error = RequestTimeout(f"the request body did not arrive within {self.timeout:g} s")
            await send_problem(scope, send, error)
            return None
        except DatasvcError as error:  # over DATASVC_MAX_BODY_BYTES, counted as it arrived
            await send_problem(scope, send, error)
            return None
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # an app asking for more waits for the disconnect, as before
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay


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
