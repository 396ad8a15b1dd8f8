"""``GET /health`` answered by the HTTP protocol itself: liveness never waits behind the app.

An orchestrator restarts a process whose liveness probe times out. Through the app, ``/health`` waited its
turn in the event loop behind every request in flight and every refusal, so under a flood the probe took
seconds and a busy process would have been restarted for being busy. Here the answer is written in the
parser's callback, in the same turn of the loop that read it: it costs a parse and a write, takes no
in-flight slot and is never refused. The same answer as the app's route (`datasvc.health.live`), which
still serves ``HEAD``, a ``/health`` with a query string, and one pipelined behind a request being
answered (answers keep their order).

Counted in the request metrics like the app's answers (route ``/health``); no access-log line: a probe
every few seconds is not worth one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

BODY = b'{"status":"ok"}'
_HEAD = b"HTTP/1.1 200 OK\r\n"
_FIXED = b"content-type: application/json\r\ncontent-length: %d\r\nx-request-id: " % len(BODY)


class Liveness:
    """One per app (its lifespan state); ``observe``: the request metrics of ``GET /health 200``."""

    __slots__ = ("observe",)

    def __init__(self, observe: Callable[[float], None] | None = None) -> None:
        self.observe = observe

    def answer(self, request_id: str, headers: Iterable[tuple[bytes, bytes]], *, close: bool) -> bytes:
        """The whole answer; ``headers`` are the server's own (uvicorn's ``Date``)."""
        if self.observe is not None:
            self.observe(0.0)  # answered within the callback that read it
        lines = [_HEAD, *(name + b": " + value + b"\r\n" for name, value in headers), _FIXED]
        lines.append(request_id.encode())
        lines.append(b"\r\nconnection: close\r\n\r\n" if close else b"\r\n\r\n")
        lines.append(BODY)
        return b"".join(lines)
