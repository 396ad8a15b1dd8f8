"""uvicorn's httptools protocol, with the bounds a connection needs against a slow or hostile caller.

What uvicorn gives and we use: ``timeout_keep_alive`` (an idle keep-alive connection closes), reading
paused while a pipelined request waits its turn and while a request body is not consumed, and writing
paused (``FlowControl``) while the send buffer is over its high-water mark. What it lacks, added here:

- a bound on the request head (request line + headers): httptools buffers a head of any size, so past
  ``DATASVC_MAX_HEADER_BYTES`` (raw bytes while the head is incomplete, and the exact URL and header
  sizes the parser reports) the connection gets a 431 problem and is closed;
- a head timeout (``DATASVC_HEAD_TIMEOUT``): a connection that has not completed a request head within
  it, from its start or from the head's first byte, is closed (slowloris holds nothing for ever);
- a send timeout (``DATASVC_SEND_TIMEOUT``): a connection whose send buffer stays full that long (the
  client does not read its answers) is aborted, which also ends the request task waiting to write;
- a bound on connections (``DATASVC_MAX_CONNECTIONS``): past it a new connection is answered 503 and
  closed at once, so the descriptor limit is never reached and the connections already open are served;
- a bound on pipelining: at most `MAX_PIPELINED` requests wait behind the one being answered; the next
  one is answered 503 after them and the connection closed; and a pipelined request starts only once
  its client has read the answers before it (no more than `UNREAD_BOUND` bytes waiting to leave the
  machine): on loopback the kernel's send buffer takes over a megabyte, so a client that pipelines and
  never reads would otherwise have all its requests served at once, a burst of work that steals the
  turn of every other caller (130 such clients: ~2,200 requests) before its writes ever pause;
- framing the app must never see (RFC 9112): an HTTP/1.1 request with no ``Host`` or several (section
  3.2), a ``Transfer-Encoding`` whose final coding is not ``chunked`` (section 6.3), both 400 and closed;
  a WebSocket upgrade (not served) is a 400 problem, other upgrades (``h2c``) are ignored and the
  connection closed after the answer.

Every answer written here is problem+json with ``Date`` and an ``X-Request-ID`` (the caller's, if it
sent a safe one already), like the app's; a request the parser cannot read at all is a 400 too.
Admission happens here for most requests (`datasvc.limits`): a bodiless request that is not pipelined
takes its ``DATASVC_MAX_IN_FLIGHT`` slot as its head is parsed (without callers' shares: `Slots.at_parse`),
or is refused there with every slot taken
(a 503 paced by `Slots.pause`, reading paused meanwhile: no task, no middleware). Its slot is given back
when its answer is handed to the transport (`on_response_complete`), or as soon as writing it waits on
the client (`pause_writing`), or when its task ends on a lost connection. A request with a body, or one
pipelined behind another, takes its slot in the app (`datasvc.limits`), its body read first within
``DATASVC_BODY_TIMEOUT`` (`datasvc.bodies`). ``GET /health`` is answered here (`datasvc.liveness`).

The per-request callbacks replace uvicorn's rather than extend them (`on_message_begin`,
`on_headers_complete`, `on_url`, `on_header`, `on_body`, `on_message_complete`, `_start_asgi_task`,
`on_response_complete`): each is on the path of every request, and one frame instead of two with our
checks inlined is what keeps a request's cost where it was before these bounds.

``HttpToolsProtocol`` is uvicorn's private API: pyproject.toml pins the tested uvicorn, and
tests/test_private_apis.py names each callback and attribute this relies on.

It also serves the drain window (`datasvc.drain`): once the process drains, each request is answered
with ``Connection: close`` and its connection closed after the answer, never before.
"""

from __future__ import annotations

import asyncio
import contextvars
import fcntl
import functools
import struct
import termios
import urllib.parse
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn._types import ASGI3Application
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from datasvc.drain import Drain
from datasvc.errors import BadRequest, DatasvcError, HeadersTooLarge, Overloaded
from datasvc.limits import RESERVED, Slots, overloaded
from datasvc.liveness import Liveness
from datasvc.middleware import new_request_id, safe_request_id
from datasvc.responses import raw_problem
from datasvc.settings import Settings

if TYPE_CHECKING:
    from datasvc.metrics import Metrics

# Requests a connection may have waiting behind the one being answered. Browsers and HTTP clients do
# not pipeline; a caller that sends a hundred requests at once and reads nothing only piles up work.
MAX_PIPELINED = 16
# On shutdown, how long a connection without a request yet may take to send one (see `shutdown`).
LAST_CALL = 1.0
# Bytes of earlier answers a connection may leave unread (in the transport and the kernel's send queue)
# and still have its next pipelined request started: uvicorn's own high-water mark for a request body.
UNREAD_BOUND = HIGH_WATER_LIMIT
# While a client leaves its answers unread, how often its next pipelined request is looked at again: the
# first look soon, then less and less often; the send timeout ends the wait.
FIRST_LOOK, LAST_LOOK = 0.02, 1.0


@functools.cache
def _environment() -> Settings:
    # Read once per worker process: `datasvc serve` passes its settings to workers in the environment.
    return Settings.from_env()


class _Refused(Exception):
    pass


class HeadLimitedHttpToolsProtocol(HttpToolsProtocol):
    """`HttpToolsProtocol` with bounded heads, timeouts, connections and pipelining (module docstring)."""

    settings: Settings | None = None  # None: from the environment (`datasvc serve`)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = self.settings or _environment()
        self._limit = settings.max_header_bytes
        self._head_timeout = settings.head_timeout
        self._send_timeout = settings.send_timeout
        self._max_connections = settings.max_connections
        self._in_head = True
        self._head_bytes = 0  # raw bytes received while the head was incomplete
        self._parsed_bytes = 0  # URL and header bytes the parser reported
        self._hosts = 0  # Host headers of the request being parsed
        self._coding: bytes | None = None  # the final Transfer-Encoding coding, if any
        self._body = False  # the request being parsed declares a body
        self._refused = False
        self._deferred: DatasvcError | None = None  # a refusal waiting for earlier pipelined answers
        self._head_timer: asyncio.TimerHandle | None = None
        self._shed_timer: asyncio.TimerHandle | None = None
        # Answered here, not written yet (reading paused): (request id, keep-alive, liveness or refusal).
        self._sheds: list[tuple[str, bool, bool]] = []
        self._answered = False  # the message being parsed is answered here: its body is dropped
        slots: Slots | None = self.app_state.get("slots")
        self._slots = slots if slots is not None and slots.limit else None
        self._holding = False  # the running request holds a slot taken here (`give_back`)
        self._task: asyncio.Task[None] | None = None  # the running request's task
        self._send_timer: asyncio.TimerHandle | None = None
        self._pipeline_timer: asyncio.TimerHandle | None = None  # a pipelined request waits for reading
        # The request being answered (uvicorn's `cycle` is the last one parsed, maybe a pipelined one).
        self._running: RequestResponseCycle | None = None
        # The app's lifespan state holds the process's Drain (absent for apps without the lifespan).
        self._metrics: Metrics | None = self.app_state.get("metrics")
        self._liveness: Liveness | None = self.app_state.get("liveness")
        self._drain: Drain | None = self.app_state.get("drain")
        if self._drain is not None:
            self._drain.connections = self.connections  # uvicorn's one set of open connections
        self._requests = 0  # requests begun on this connection
        self._stopping = False  # the server shuts down: answer what comes with `Connection: close`
        self._fresh_context = self.config.reset_contextvars

    # -- the connection ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if self._max_connections and len(self.connections) >= self._max_connections:
            # Before uvicorn counts it: refused at once, nothing read, the ones already open unaffected.
            self._refused = True
            self.transport = transport
            self._closed("too-many-connections")
            error = Overloaded(f"more than {self._max_connections} connections open; retry shortly")
            transport.write(raw_problem(error, request_id=new_request_id(), headers=self._server_headers()))
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head_timer()
        if self._drain is not None and self._drain.port is None and self.server is not None:
            self._drain.port = self.server[1]

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self.flow is None:  # refused in connection_made: uvicorn never knew it
            return
        running = self._running
        if running is not None and not running.response_complete:
            # uvicorn tells only the last request parsed; the one being answered may be an earlier one
            # (pipelining), woken from waiting to write by this loss: it must drop its answer, not write
            # it on the closed transport (a RuntimeError logged as a 500 with a traceback).
            running.disconnected = True
        if self._holding:
            task = self._task
            if task is None or task.done():
                self.give_back()
            else:  # its handler still works (and may hold a database connection): until it ends
                task.add_done_callback(self._given_back)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, with the head's bounds: one frame per read.
        if self._refused:
            return
        in_head_before = self._in_head
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            pass  # never taken up (`_should_upgrade`); the request is answered as plain HTTP
        except httptools.HttpParserError:
            self.send_400_response("Invalid HTTP request received.")
            return
        if self._refused:
            return
        if self._in_head and in_head_before:
            self._head_bytes += len(data)
            if self._head_bytes > self._limit:
                self._refuse(HeadersTooLarge(f"the request line and headers exceed {self._limit} bytes"))
                return
        if self._head_timer is None:
            cycle = self.cycle
            if self._in_head or cycle is None or cycle.response_complete:
                self._arm_head_timer()  # a head begun and not complete, or bytes that begin none

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: ASGI3Application) -> None:
        self._running = cycle
        if self._fresh_context:
            task = self.loop.create_task(cycle.run_asgi(app), context=contextvars.Context())
        else:
            task = self.loop.create_task(cycle.run_asgi(app))
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)
        self._task = task

    def give_back(self) -> None:
        """Free the slot the running request took here (`limits.Reservation`); idempotent."""
        if self._holding:
            self._holding = False
            self._slots.in_flight -= 1  # type: ignore[union-attr]

    def _given_back(self, task: asyncio.Task[None]) -> None:
        self.give_back()

    def pause_writing(self) -> None:
        self.flow.pause_writing()
        self.give_back()  # the answer now waits on the client's reading, not on our work
        if self._send_timer is None:
            self._send_timer = self.loop.call_later(self._send_timeout, self._send_timed_out)

    def resume_writing(self) -> None:
        self.flow.resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    # -- parser callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if len(self.pipeline) >= MAX_PIPELINED:
            self._closed("too-many-pipelined")
            self.headers = []  # not the previous request's: the refusal must not echo its id
            self._refuse(Overloaded(f"more than {MAX_PIPELINED} requests pipelined on one connection"))
            raise _Refused
        # uvicorn's, and our per-request state.
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }
        self._requests += 1
        self._answered = False
        self._in_head = True
        self._head_bytes = 0
        self._parsed_bytes = 0
        self._hosts = 0
        self._coding = None
        self._body = False

    def on_url(self, url: bytes) -> None:
        self._parsed_bytes += len(url)
        if self._parsed_bytes > self._limit:
            self._refuse(HeadersTooLarge(f"the request line and headers exceed {self._limit} bytes"))
            raise _Refused
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._parsed_bytes += len(name) + len(value) + 4  # ": " and CRLF
        if self._parsed_bytes > self._limit:
            self._refuse(HeadersTooLarge(f"the request line and headers exceed {self._limit} bytes"))
            raise _Refused
        # uvicorn's: lower-cased name, value without trailing whitespace (RFC 9110 section 5.5).
        name = name.lower()
        value = value.rstrip(b" \t")
        if name == b"host":
            self._hosts += 1
        elif name == b"content-length":
            self._body = value != b"0"
        elif name == b"transfer-encoding":
            self._coding = value.rpartition(b",")[2].strip().lower()
            self._body = True
        elif name == b"expect" and value.lower() == b"100-continue":
            self.expect_100_continue = True
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._in_head = False
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        parser = self.parser
        http_version = parser.get_http_version()
        upgrade = parser.should_upgrade()
        suspect = upgrade or self._coding is not None or (self._hosts != 1 and http_version == "1.1")
        if suspect and (error := self._framing_error(http_version, upgrade)):
            self._refuse(error)
            raise _Refused
        scope = self.scope
        scope["method"] = method = parser.get_method().decode("ascii")
        if http_version != "1.1":
            scope["http_version"] = http_version
        keep_alive = http_version != "1.0" and parser.should_keep_alive() and not upgrade
        if self._stopping or (self._drain is not None and self._drain.draining):
            keep_alive = False  # answered with `Connection: close`, then closed
        url = self.url
        cycle = self.cycle
        idle = cycle is None or cycle.response_complete
        if self._sheds:  # behind answers not written yet: answered here too, so answers keep their order
            self._answer_here(keep_alive, live=url == b"/health" and method == "GET")
            return
        reserve = False
        if idle:
            if url == b"/health" and method == "GET" and self._liveness is not None:
                self._answer_here(keep_alive, live=True)
                return
            slots = self._slots
            if slots is not None:
                if slots.in_flight >= slots.limit:
                    self._answer_here(keep_alive, live=False)
                    return
                # A body is read first, outside any slot (`datasvc.bodies`); `Slots.at_parse`: why not always.
                if not self._body and slots.at_parse:
                    slots.in_flight += 1
                    self._holding = reserve = True
        # uvicorn's (never upgrading, `limit_concurrency` unused: our bounds replace it).
        parsed_url = httptools.parse_url(url)
        raw_path = parsed_url.path
        path = raw_path.decode("ascii")
        if "%" in path:
            path = urllib.parse.unquote(path)
        root_path = self.root_path
        scope["path"] = root_path + path if root_path else path
        scope["raw_path"] = root_path.encode("ascii") + raw_path if root_path else raw_path
        scope["query_string"] = parsed_url.query or b""
        if reserve:
            scope[RESERVED] = self  # type: ignore[literal-required]
        self.cycle = cycle = RequestResponseCycle(
            scope=scope,
            transport=self.transport,
            flow=self.flow,
            logger=self.logger,
            access_logger=self.access_logger,
            access_log=self.access_log,
            default_headers=self.server_state.default_headers,
            message_event=asyncio.Event(),
            expect_100_continue=self.expect_100_continue,
            keep_alive=keep_alive,
            on_response=self.on_response_complete,
        )
        if idle:
            self._start_asgi_task(cycle, self.app)
        else:  # pipelined: waits for the answers before it
            self.flow.pause_reading()
            self.pipeline.appendleft((cycle, self.app))

    def _answer_here(self, keep_alive: bool, *, live: bool) -> None:
        """Answer the request being parsed below the app: liveness now, a refusal paced.

        A refusal through the app costs a task, the middleware stack and an access-log line: under a flood
        of callers that resend at once (wrk, or a client ignoring ``Retry-After``) the worker spent its
        CPU refusing and its goodput collapsed. Here it costs a parse and a write, and the answer waits
        `Slots.pause` (reading paused meanwhile), so the refusals a worker answers per second are bounded
        whatever the number of connections; nothing is held but the connection. Liveness is never
        refused; behind a refusal not yet written it waits with it, so answers keep their order.
        """
        self._answered = True  # its body, if any, is read and dropped
        request_id = self._caller_request_id() or new_request_id()
        if live and not self._sheds:
            assert self._liveness is not None
            headers = self._server_headers()
            self.transport.write(self._liveness.answer(request_id, headers, close=not keep_alive))
            if not keep_alive:
                self._refused = True
                self.transport.close()
            return
        if not live:
            assert self._slots is not None
            self._slots.shed_early += 1
        self._sheds.append((request_id, keep_alive, live))
        if self._shed_timer is None:
            self.flow.pause_reading()
            pause = self._slots.pause(self.loop.time()) if self._slots is not None else 0.0
            self._shed_timer = self.loop.call_later(pause, self._answer_sheds)

    def _answer_sheds(self) -> None:
        self._shed_timer = None
        sheds, self._sheds = self._sheds, []
        if self.transport.is_closing():
            return
        headers = self._server_headers()
        error = overloaded(self._slots.limit) if self._slots is not None else None
        answers = []
        for request_id, keep_alive, live in sheds:
            if live and self._liveness is not None:
                answers.append(self._liveness.answer(request_id, headers, close=not keep_alive))
            else:
                assert error is not None
                close = not keep_alive
                answers.append(raw_problem(error, request_id=request_id, headers=headers, close=close))
            if not keep_alive:
                self._refused = True
                self.transport.write(b"".join(answers))
                self.transport.close()
                return
        self.transport.write(b"".join(answers))
        self.flow.resume_reading()

    def on_body(self, body: bytes) -> None:
        if self._answered:
            return
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.body += body
        if len(cycle.body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()

    def on_message_complete(self) -> None:
        if self._answered:
            return
        cycle = self.cycle
        if cycle.response_complete:
            return
        cycle.more_body = False
        cycle.message_event.set()

    def _framing_error(self, http_version: str, upgrade: bool) -> DatasvcError | None:
        if self._hosts != 1 and http_version == "1.1":
            return BadRequest(f"an HTTP/1.1 request needs exactly one Host header, not {self._hosts}")
        if self._coding is not None and self._coding != b"chunked":
            return BadRequest("Transfer-Encoding must end with chunked; the body's length is unknown")
        if upgrade and self._upgrade() == b"websocket":
            return BadRequest("WebSocket is not served here: this API is plain HTTP requests")
        return None

    def _upgrade(self) -> bytes | None:
        for name, value in self.headers:
            if name == b"upgrade":
                return value.strip().lower()
        return None

    # Upgrades are never taken up (no WebSocket protocol runs here, whatever is installed): the request is
    # refused (WebSocket) or answered as plain HTTP, and uvicorn's warnings about it would only be noise.
    def _should_upgrade(self) -> bool:
        return False

    def _unsupported_upgrade_warning(self) -> None:
        pass

    def send_400_response(self, msg: str) -> None:
        if not self._refused:  # a refusal aborts the parser, which uvicorn reports as a parse error
            self._refuse(BadRequest("the request line or headers cannot be parsed as HTTP/1.1"))

    def shutdown(self) -> None:
        """The server stops: close when idle, except a connection whose first request may be on its way.

        uvicorn closes every idle connection at once. One just accepted, or with bytes unread, may carry
        a request its client has written already: closed, it would be reset. It gets `LAST_CALL` seconds
        for that request, answered with ``Connection: close``; a head under way is awaited likewise.
        """
        if self._refused or self.flow is None:
            return
        self._stopping = True
        fresh = self._requests == 0 or (self._in_head and self._head_bytes) or _unread(self.transport)
        if self._busy() or self._sheds or not fresh:
            super().shutdown()
            return
        self.loop.call_later(LAST_CALL, self._last_call_over)

    def _last_call_over(self) -> None:
        if not self._busy() and not self.transport.is_closing():
            self.transport.close()

    # -- timers --------------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self._head_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._busy():  # reading waits for our answers: the head's time runs once they are out
            self._arm_head_timer()
            return
        self._refused = True
        self._closed("head-timeout")
        self.transport.close()

    def _send_timed_out(self) -> None:
        self._send_timer = None
        self._refused = True
        self._closed("send-timeout")
        # Not close(): that waits for the buffer to drain, which is what the client does not let happen.
        # The request task waiting to write is told first, so it drops what is left instead of writing
        # on the aborted transport (uvloop wakes it before `connection_lost`).
        if self._running is not None:
            self._running.disconnected = True
        self.transport.abort()

    def _closed(self, reason: str) -> None:
        if self._metrics is not None:
            self._metrics.count_closed(reason)

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._send_timer, self._shed_timer, self._pipeline_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._send_timer = self._shed_timer = self._pipeline_timer = None

    # -- answers written here ------------------------------------------------------------------

    def on_response_complete(self) -> None:
        # uvicorn's, with the slot given back and a deferred refusal written once its turn comes.
        if self._holding:
            self._holding = False
            self._slots.in_flight -= 1  # type: ignore[union-attr]
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None
        self.flow.resume_reading()
        if self.pipeline:
            if self.transport.get_write_buffer_size() + _unsent(self.transport) > UNREAD_BOUND:
                deadline = self.loop.time() + self._send_timeout
                self._pipeline_timer = self.loop.call_later(
                    FIRST_LOOK, self._next_pipelined, deadline, FIRST_LOOK
                )
                return
            cycle, app = self.pipeline.pop()
            self._start_asgi_task(cycle, app)
        else:
            self.timeout_keep_alive_task = self.loop.call_later(
                self.timeout_keep_alive, self.timeout_keep_alive_handler
            )
            if self._deferred is not None:
                error, self._deferred = self._deferred, None
                self._answer(error)

    def _next_pipelined(self, deadline: float, waited: float) -> None:
        """Start the next pipelined request once the client has read the answers before it."""
        self._pipeline_timer = None
        if self.transport.is_closing() or not self.pipeline:
            return
        if self.transport.get_write_buffer_size() + _unsent(self.transport) > UNREAD_BOUND:
            if self.loop.time() >= deadline:
                self._send_timed_out()
                return
            waited = min(2 * waited, LAST_LOOK)
            self._pipeline_timer = self.loop.call_later(waited, self._next_pipelined, deadline, waited)
            return
        cycle, app = self.pipeline.pop()
        self._start_asgi_task(cycle, app)

    def _busy(self) -> bool:
        """Requests read before the refused one are still being answered (pipelining)."""
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _refuse(self, error: DatasvcError) -> None:
        self._refused = True
        self._answer(error)

    def _answer(self, error: DatasvcError) -> None:
        """Write ``error`` as problem+json and close: after a head it cannot read, the stream is lost.

        Answers go out in request order: while earlier requests are answered, the refusal waits for them.
        """
        if self._busy():
            self._deferred = error
            return
        request_id = self._caller_request_id() or new_request_id()
        self.transport.write(raw_problem(error, request_id=request_id, headers=self._server_headers()))
        self.transport.close()

    def _server_headers(self) -> list[tuple[bytes, bytes]]:
        # uvicorn's ``Date`` (refreshed every second by the server), as on every answer of the app.
        return list(self.server_state.default_headers)

    def _caller_request_id(self) -> str | None:
        # uvicorn collects the headers parsed so far in `self.headers` (before the scope exists).
        for name, value in getattr(self, "headers", None) or ():
            if name.lower() == b"x-request-id":
                return safe_request_id(value)
        return None


def for_settings(settings: Settings) -> type[HeadLimitedHttpToolsProtocol]:
    """The protocol class with explicit settings (tests and in-process servers; no environment)."""
    return type("HeadLimitedHttpToolsProtocol", (HeadLimitedHttpToolsProtocol,), {"settings": settings})


def limited(max_head_bytes: int) -> type[HeadLimitedHttpToolsProtocol]:
    """The protocol class with an explicit head bound and the other settings' defaults."""
    return for_settings(Settings(max_header_bytes=max_head_bytes))


def _unread(transport: asyncio.Transport) -> bool:
    """Whether the kernel holds bytes of this connection that the event loop has not read yet."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        pending: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
    except OSError:
        return False
    return pending > 0


def _unsent(transport: asyncio.Transport) -> int:
    """Bytes written to this connection's socket that its peer has not acknowledged (TIOCOUTQ)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        queued: int = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
    except OSError:
        return 0
    return queued
