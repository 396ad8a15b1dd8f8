"""uvicorn's httptools protocol with a bound on the request head (request line + headers): 431 beyond it.

httptools buffers a request head of any size (1 MB of headers is parsed and handed to the app), so a
caller could make each connection hold as much memory as it cares to send. uvicorn's h11 protocol has a
bound (``h11_max_incomplete_event_size``) but is several times slower; this keeps httptools and counts:

- the raw bytes received while a head is incomplete, so memory stays within the limit plus one read;
- the exact size of the URL and of every header as the parser reports them, so a head that arrives in
  one read is measured too.

Past ``DATASVC_MAX_HEADER_BYTES`` the connection gets a 431 problem and is closed: after a refused head
the rest of the stream cannot be parsed.

A request the parser cannot read at all (a malformed request line, an unknown method, a broken header) is
answered 400 problem+json too, instead of uvicorn's ``text/plain``: every answer, even one the app never
saw, is problem+json and carries an ``X-Request-ID`` (the caller's, if it had sent a safe one already).

``HttpToolsProtocol`` is uvicorn's private API: pyproject.toml pins the tested uvicorn, and
tests/test_private_apis.py names each callback and attribute this relies on.

It also serves the drain window (`datasvc.drain`): once the process drains, each request is answered
with ``Connection: close`` and its connection closed after the answer, never before.
"""

from __future__ import annotations

import functools
import http
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from datasvc.drain import Drain
from datasvc.errors import BadRequest, DatasvcError, HeadersTooLarge
from datasvc.middleware import new_request_id, safe_request_id
from datasvc.responses import PROBLEM_MEDIA_TYPE
from datasvc.settings import Settings


@functools.cache
def _configured_limit() -> int:
    # Read once per worker process: `datasvc serve` passes its settings to workers in the environment.
    return Settings.from_env().max_header_bytes


class _Refused(Exception):
    pass


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` that answers 431 to a request head larger than ``max_head_bytes``."""

    max_head_bytes: int | None = None  # None: DATASVC_MAX_HEADER_BYTES from the environment

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._limit = self.max_head_bytes or _configured_limit()
        self._in_head = True
        self._head_bytes = 0  # raw bytes received while the head was incomplete
        self._parsed_bytes = 0  # URL and header bytes the parser reported
        self._refused = False
        self._deferred: DatasvcError | None = None  # a refusal waiting for earlier pipelined answers
        # The app's lifespan state holds the process's Drain (absent for apps without the lifespan).
        self._drain: Drain | None = self.app_state.get("drain")
        if self._drain is not None:
            self._drain.connections = self.connections  # uvicorn's one set of open connections

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        in_head_before = self._in_head
        super().data_received(data)
        if self._in_head and in_head_before and not self._refused:
            self._head_bytes += len(data)
            if self._head_bytes > self._limit:
                self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0
        self._parsed_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()
        if self._drain is not None and self._drain.draining and self.cycle.scope is self.scope:
            self.cycle.keep_alive = False  # answered with `Connection: close`, then closed

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a refusal aborts the parser, which uvicorn reports as a parse error
            self._refused = True
            self._answer(BadRequest("the request line or headers cannot be parsed as HTTP/1.1"))

    def _count(self, size: int) -> None:
        self._parsed_bytes += size
        if self._parsed_bytes > self._limit:
            self._refuse()
            raise _Refused

    def _refuse(self) -> None:
        self._refused = True
        self._answer(HeadersTooLarge(f"the request line and headers exceed {self._limit} bytes"))

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._deferred is not None and not self._busy():
            error, self._deferred = self._deferred, None
            self._answer(error)

    def _busy(self) -> bool:
        """Requests read before the refused one are still being answered (pipelining)."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _answer(self, error: DatasvcError) -> None:
        """Write ``error`` as problem+json and close: after a head it cannot read, the stream is lost.

        Answers go out in request order: while earlier requests are answered, the refusal waits for them.
        """
        if self._busy():
            self._deferred = error
            return
        request_id = self._caller_request_id() or new_request_id()
        body = orjson.dumps(
            {
                "type": error.type,
                "title": error.title,
                "status": error.status,
                "detail": error.detail,
                "request_id": request_id,
            }
        )
        head = (
            f"HTTP/1.1 {error.status} {http.HTTPStatus(error.status).phrase}\r\n"
            f"content-type: {PROBLEM_MEDIA_TYPE}\r\ncontent-length: {len(body)}\r\n"
            f"x-request-id: {request_id}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()

    def _caller_request_id(self) -> str | None:
        # uvicorn collects the headers parsed so far in `self.headers` (before the scope exists).
        for name, value in getattr(self, "headers", ()):
            if name.lower() == b"x-request-id":
                return safe_request_id(value)
        return None


def limited(max_head_bytes: int) -> type[HeadLimitedHttpToolsProtocol]:
    """The protocol class with an explicit bound (tests and in-process servers; no environment)."""
    return type(
        "HeadLimitedHttpToolsProtocol", (HeadLimitedHttpToolsProtocol,), {"max_head_bytes": max_head_bytes}
    )
