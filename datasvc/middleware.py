"""Request tracking at the ASGI edge: request id, body cap, clock, access log, last-resort 500.

A caller that closes its connection mid-request (`ClientDisconnect`) is logged at INFO and counted as
``client-closed`` (status 499 in the access log and metrics), never a 500 with a traceback.

Pure ASGI rather than ``BaseHTTPMiddleware``: no extra task per request and streaming stays intact.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datasvc.accesslog import AccessLog
from datasvc.context import Timing, request_timing
from datasvc.errors import InternalError, PayloadTooLarge
from datasvc.responses import send_problem

if TYPE_CHECKING:
    from datasvc.tracing import Tracing

error_log = logging.getLogger("datasvc.error")
client_log = logging.getLogger("datasvc.client")

# The status the access log and metrics give a request whose caller closed its connection before the
# request was read whole (nginx's 499): no answer was sent.
CLIENT_CLOSED = 499

# A caller's request id is echoed into headers and logs, so only a conservative alphabet is honoured.
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestContextMiddleware:
    """Give every HTTP request an id, a database clock, one access-log line and one metrics observation.

    Never leaks a traceback. Outermost of our middleware, so what it records is what the client got.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        access_log: AccessLog | None = None,
        observe: Callable[[Scope, int, float], None] | None = None,
        on_client_closed: Callable[[], None] | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.access_log = access_log  # None: no access log (DATASVC_ACCESS_LOG=off)
        self.observe = observe  # metrics: called once per request with its status and duration
        self.on_client_closed = on_client_closed  # metrics: the `client-closed` count
        self.tracing = tracing  # None: tracing not configured (datasvc.tracing is then never imported)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id, declared = _read_headers(scope["headers"])
        request_id = request_id or new_request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        state["arrived"] = started  # the clock a caller's deadline (Prefer: wait) counts from
        timing = Timing()
        if self.tracing is not None:
            timing.trace = self.tracing.start(scope)
        token = request_timing.set(timing)
        status = 500
        response_started = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                    (b"server-timing", b"db;dur=%.2f" % (timing.db_seconds * 1000)),
                ]
            await send(message)

        try:
            if declared is not None and declared > self.max_body_bytes:
                await send_problem(scope, send_wrapper, PayloadTooLarge(_too_large(self.max_body_bytes)))
            else:
                await self.app(scope, _capped(receive, self.max_body_bytes), send_wrapper)
        except ClientDisconnect:
            # The caller went away before its request was read: its doing, not an error of ours.
            status = CLIENT_CLOSED
            client_log.info("client closed the connection mid-request", extra={"request_id": request_id})
            if self.on_client_closed is not None:
                self.on_client_closed()
        except Exception:
            error_log.exception("unhandled error", extra={"request_id": request_id})
            if not response_started:
                await send_problem(scope, send_wrapper, InternalError())
        finally:
            request_timing.reset(token)
            elapsed = time.perf_counter() - started
            if self.observe is not None:
                self.observe(scope, status, elapsed)
            trace = timing.trace
            if trace is not None:
                trace.end(scope, status, state.get("caller"))
            if self.access_log is not None:
                fields: dict[str, Any] = {
                    "request_id": request_id,
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 3),
                    "db_ms": round(timing.db_seconds * 1000, 3),
                    "statements": timing.statements,
                    "caller": state.get("caller"),
                }
                if trace is not None:
                    fields["trace_id"], fields["span_id"] = trace.ids()
                self.access_log.write(fields)


class _RequestIds:
    """32 random hex digits per request, like ``uuid4().hex``, cut from one ``os.urandom`` read per 128 ids.

    One read per request was a system call each time (measured: docs/benchmarks.md); the ids are as
    random. A forked child starts a batch of its own, so two processes never share ids.
    """

    __slots__ = ("_hex", "_pos")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._hex = ""
        self._pos = 0

    def __call__(self) -> str:
        pos = self._pos
        if pos >= len(self._hex):
            self._hex = os.urandom(16 * 128).hex()
            pos = 0
        self._pos = pos + 32
        return self._hex[pos : pos + 32]


# 32 random hex digits, like uuid4().hex but a fraction of its cost (measured: docs/benchmarks.md).
new_request_id = _RequestIds()
os.register_at_fork(after_in_child=new_request_id.reset)


def safe_request_id(value: bytes) -> str | None:
    """A caller's ``X-Request-ID`` if it is safe to echo into headers and logs, else None."""
    text = value.decode("latin-1")
    return text if _REQUEST_ID.match(text) else None


def _read_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, int | None]:
    """The caller's request id (if safe to echo) and the declared Content-Length, in one pass."""
    request_id: str | None = None
    length: int | None = None
    for name, value in headers:
        if name == b"x-request-id":
            request_id = safe_request_id(value)
        elif name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                length = None
    return request_id, length


def _too_large(limit: int) -> str:
    return f"request body exceeds {limit} bytes"


def _capped(receive: Receive, limit: int) -> Receive:
    """Count body bytes as they arrive: a chunked body has no Content-Length to check up front."""
    seen = 0

    async def wrapped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(_too_large(limit))
        return message

    return wrapped
