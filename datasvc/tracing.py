"""OpenTelemetry traces: a SERVER span per request, a CLIENT span per statement, trace context in the SQL.

Off unless configured the standard way (`Settings.tracing`: ``OTEL_EXPORTER_OTLP_ENDPOINT``,
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or ``OTEL_TRACES_EXPORTER=otlp``). Off, `create_app` never imports
this module, so nothing of the SDK is loaded, and the hooks on the request path are one ``is None`` test
each (the other modules name these types for the type checker only). On, the SDK's own variables apply
(``OTEL_TRACES_SAMPLER``/``_ARG``, parent-based always-on by default; ``OTEL_RESOURCE_ATTRIBUTES``;
``OTEL_EXPORTER_OTLP_HEADERS``/``_TIMEOUT``/``_COMPRESSION``; ``OTEL_BSP_*``).

Where the hooks are (narrow, where the work is already timed):

- the request middleware calls `Tracing.start` and `RequestTrace.end`; the trace rides on the request's
  `Timing` (``timing.trace``), which the database layer already reads;
- `datasvc.statements.execute` opens one CLIENT span per statement sent (`RequestTrace.statement`), so a
  retried statement shows each attempt; the connection wait becomes an event on the server span
  (`RequestTrace.waited`).

Only a **sampled** request's statements carry ``/*traceparent='00-<trace>-<span>-01'*/`` (sqlcommenter's
format, after the registry-name tag, so ``pg_stat_activity.query``, cut at ``track_activity_query_size``,
still shows it for a long statement). Their text differs on every execution, so they are sent as
PostgreSQL's unnamed statement (the ``plan-cache: custom`` path) rather than filling asyncpg's statement
cache with one-off entries; an unsampled request sends the registry text unchanged and keeps the cached
prepared statements and their generic plans. No child span is made for an unsampled request at all.

Spans are made the way the SDK's exporters read them, as finished `ReadableSpan` records built once
their end is known (the SDK's live `Span`, with its locks and per-attribute validation, costs a request
several times more), with the sampler, ids and resource of the SDK. They leave through the SDK's batch
processor (`datasvc.spanexport`: a request only appends to its queue, drops are counted).
`Tracing.close` flushes within the time it is given, then gives up.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    ParentBased,
    Sampler,
    TraceIdRatioBased,
)
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    get_current_span,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import Scope

from datasvc.spanexport import SpanQueue

if TYPE_CHECKING:
    from datasvc.settings import Settings

log = logging.getLogger("datasvc.tracing")

SERVICE_NAME = "datasvc"
_TRACEPARENT = b"traceparent"
_TRACESTATE = b"tracestate"
_SAMPLERS = (
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED | TraceFlags.RANDOM_TRACE_ID)  # our trace ids are random
_UNSET = Status(StatusCode.UNSET)
_ERROR = Status(StatusCode.ERROR)


class Tracing:
    """The sampler, resource and batch processor of one app, and the request hook."""

    def __init__(
        self,
        provider: TracerProvider,
        processor: SpanQueue,
        templates: Mapping[Any, str],
        servers: Mapping[str, dict[str, Any]],
        rule: _Rule,
    ) -> None:
        self.provider = provider  # made from the SDK's variables; `close` shuts it and its processor down
        self.processor = processor
        self.templates = templates  # endpoint -> route template, as the metrics use
        self.servers = servers  # target kind -> db.namespace, server.address, server.port
        self.resource = provider.resource
        self.scope = InstrumentationScope("datasvc")
        self._propagator = TraceContextTextMapPropagator()
        self._rule = rule

    @classmethod
    def create(
        cls,
        settings: Settings,
        templates: Mapping[Any, str],
        *,
        exporter: SpanExporter | None = None,
    ) -> Tracing:
        """The SDK set up from ``settings`` and its own variables; ``exporter`` replaces OTLP (tests)."""
        detected = OTELResourceDetector().detect()  # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
        name = settings.otel_service_name or detected.attributes.get("service.name") or SERVICE_NAME
        resource = Resource.create({"service.name": str(name)})
        # No atexit hook: `close` bounds the flush by the shutdown timeout, the SDK's own would wait 30 s.
        rule = _Rule(os.environ)
        provider = TracerProvider(sampler=rule.sampler, resource=resource, shutdown_on_exit=False)
        processor = SpanQueue.create(settings, exporter)
        provider.add_span_processor(processor)
        return cls(provider, processor, templates, _servers(settings), rule)

    def start(self, scope: Scope) -> RequestTrace:
        """The SERVER span of one HTTP request, a child of the caller's ``traceparent`` if it sent one.

        The sampler's rule (`_Rule`) decides on a trace id drawn here (or the caller's); an unsampled
        request gets only its ids, for the access log.
        """
        traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == _TRACEPARENT:
                traceparent = value.decode("latin-1")
            elif name == _TRACESTATE:
                tracestate = value.decode("latin-1")
        parent = None
        if traceparent is not None:
            carrier = {"traceparent": traceparent}
            if tracestate is not None:
                carrier["tracestate"] = tracestate
            remote = get_current_span(self._propagator.extract(carrier)).get_span_context()
            if remote.is_valid:
                parent = remote
        trace_id = parent.trace_id if parent is not None else _trace_id()
        if not self._rule.sampled(trace_id, parent):
            return RequestTrace(trace_id, _span_id())
        state = parent.trace_state if parent is not None else None
        context = SpanContext(trace_id, _span_id(), False, _SAMPLED, state)
        return SampledTrace(self, context, parent)

    def emit(
        self,
        name: str,
        kind: SpanKind,
        context: SpanContext,
        parent: SpanContext | None,
        attributes: dict[str, Any],
        started: int,
        status: Status = _UNSET,
        events: Sequence[Event] = (),
    ) -> None:
        """One finished span to the batch processor."""
        self.processor.on_end(
            ReadableSpan(
                name,
                context,
                parent,
                self.resource,
                attributes,
                events,
                kind=kind,
                status=status,
                start_time=started,
                end_time=time.time_ns(),
                instrumentation_scope=self.scope,
            )
        )

    def close(self, timeout: float) -> None:
        """Export what is queued and stop, waiting at most ``timeout`` seconds (a hung collector is left)."""
        done = threading.Thread(target=self.provider.shutdown, name="datasvc-tracing-shutdown", daemon=True)
        done.start()
        done.join(timeout)
        if done.is_alive():
            log.warning("spans not flushed within the shutdown timeout", extra={"timeout": timeout})


class RequestTrace:
    """One request's trace ids, which the access log carries; as it is, a request the sampler left out."""

    __slots__ = ("span_id", "trace_id")
    sampled = False

    def __init__(self, trace_id: int, span_id: int) -> None:
        self.trace_id = trace_id
        self.span_id = span_id

    def ids(self) -> tuple[str, str]:
        """The trace id and span id in hex, OTel's log fields."""
        return f"{self.trace_id:032x}", f"{self.span_id:016x}"

    def statement(self, name: str, target: str) -> StatementSpan:
        raise AssertionError("no statement span for an unsampled request")  # callers check `sampled`

    def waited(self, seconds: float, target: str) -> None:
        pass

    def end(self, scope: Scope, status: int, caller: str | None) -> None:
        pass


class SampledTrace(RequestTrace):
    """A sampled request's SERVER span, made when the request ends, and the parent of its statements'."""

    __slots__ = ("_events", "_started", "_tracing", "context", "parent")
    sampled = True

    def __init__(self, tracing: Tracing, context: SpanContext, parent: SpanContext | None) -> None:
        super().__init__(context.trace_id, context.span_id)
        self._tracing = tracing
        self.context = context  # the server span's
        self.parent = parent  # the caller's span, if it sent a valid traceparent
        self._events: list[Event] = []
        self._started = time.time_ns()

    def statement(self, name: str, target: str) -> StatementSpan:
        """A CLIENT span for one statement sent now."""
        context = SpanContext(self.trace_id, _span_id(), False, _SAMPLED, self.context.trace_state)
        return StatementSpan(self._tracing, name, target, context, self.context)

    def waited(self, seconds: float, target: str) -> None:
        """The wait for a pooled connection, as an event with its duration on the server span."""
        if self.context is not None:
            attributes: dict[str, Any] = {
                "db.client.connection.wait_time": seconds,
                "datasvc.db.target": target,
            }
            self._events.append(Event("db.client.connection.wait", attributes))

    def end(self, scope: Scope, status: int, caller: str | None) -> None:
        """Name the span after the route template and close it with the status the client got."""
        method = scope["method"]
        route = self._tracing.templates.get(scope.get("endpoint"))
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "http.response.status_code": status,
            "url.scheme": scope.get("scheme", "http"),
        }
        name = method
        if route is not None:
            attributes["http.route"] = route
            name = f"{method} {route}"
        if caller is not None:
            attributes["enduser.id"] = caller
        outcome = _UNSET
        if status >= 500:
            attributes["error.type"] = str(status)
            outcome = _ERROR
        self._tracing.emit(
            name, SpanKind.SERVER, self.context, self.parent, attributes, self._started, outcome, self._events
        )


class StatementSpan:
    """One statement's CLIENT span and the SQL comment that names it to PostgreSQL."""

    __slots__ = ("_attributes", "_parent", "_started", "_status", "_tracing", "context", "name")

    def __init__(
        self, tracing: Tracing, name: str, target: str, context: SpanContext, parent: SpanContext
    ) -> None:
        self._tracing = tracing
        self.name = name
        self.context = context
        self._parent = parent
        self._attributes: dict[str, Any] = {
            "db.system.name": "postgresql",
            "db.query.summary": name,
            "datasvc.db.target": target,
            **tracing.servers.get(target, {}),
        }
        self._status = _UNSET
        self._started = time.time_ns()

    def sql(self, text: str) -> str:
        """``text`` (``/* name */ SQL``) with ``/*traceparent='00-<trace>-<span>-01'*/`` after the name tag.

        sqlcommenter's format, with this span as the parent, so PostgreSQL's view of the statement leads
        to its span.
        """
        tag, sep, sql = text.partition(" */ ")
        ctx = self.context
        return f"{tag}{sep}/*traceparent='00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01'*/ {sql}"

    def failed(self, exc: BaseException) -> None:
        """The statement raised: its SQLSTATE (when PostgreSQL sent one) and the error's type."""
        sqlstate = getattr(exc, "sqlstate", None)
        self._attributes["error.type"] = sqlstate or type(exc).__qualname__
        if sqlstate:
            self._attributes["db.response.status_code"] = sqlstate
        self._status = _ERROR

    def end(self) -> None:
        self._tracing.emit(
            self.name,
            SpanKind.CLIENT,
            self.context,
            self._parent,
            self._attributes,
            self._started,
            self._status,
        )


class _Rule:
    """The sampler ``OTEL_TRACES_SAMPLER``/``_ARG`` name, as the SDK builds it, and its decision in one step.

    The SDK knows six samplers (anything else is its default, ``parentbased_always_on``); each decides
    from the trace id and the parent alone: a parent-based one follows a valid parent's sampled flag, the
    others keep trace ids whose low 64 bits are under a bound (every one, none, or a ratio's, which the
    SDK's `TraceIdRatioBased` computes). Deciding here, before any SDK object is made, is what keeps an
    unsampled request nearly free; the same sampler object goes to the provider for the record.
    """

    _ALL = 1 << 64

    def __init__(self, environ: Mapping[str, str]) -> None:
        name = environ.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
        if name not in _SAMPLERS:
            log.warning("unknown OTEL_TRACES_SAMPLER; parentbased_always_on", extra={"sampler": name})
            name = "parentbased_always_on"
        self.parent_based = name.startswith("parentbased_")
        root = name.removeprefix("parentbased_")
        if root == "traceidratio":
            try:
                rate = float(environ.get("OTEL_TRACES_SAMPLER_ARG", ""))
            except ValueError:
                rate = 1.0  # as the SDK does
            ratio = TraceIdRatioBased(rate)  # refuses a rate outside [0, 1]
            self.bound = ratio.bound
            self.sampler: Sampler = ParentBased(ratio) if self.parent_based else ratio
        else:
            static = ALWAYS_ON if root == "always_on" else ALWAYS_OFF
            self.bound = self._ALL if root == "always_on" else 0
            self.sampler = ParentBased(static) if self.parent_based else static

    def sampled(self, trace_id: int, parent: SpanContext | None) -> bool:
        if parent is not None and self.parent_based:
            return parent.trace_flags.sampled
        return trace_id & TraceIdRatioBased.TRACE_ID_LIMIT < self.bound


def _trace_id() -> int:
    trace_id = random.getrandbits(128)
    while trace_id == INVALID_TRACE_ID:
        trace_id = random.getrandbits(128)
    return trace_id


def _span_id() -> int:
    span_id = random.getrandbits(64)
    while span_id == INVALID_SPAN_ID:
        span_id = random.getrandbits(64)
    return span_id


def _servers(settings: Settings) -> dict[str, dict[str, Any]]:
    """Per target kind, the attributes that say which server and database: from the configured URLs."""
    out: dict[str, dict[str, Any]] = {}
    if settings.database_url:
        out["primary"] = _server(settings.database_url)
    replicas = settings.replicas
    if len(replicas) == 1:
        out["replica"] = _server(replicas[0])
    elif replicas:  # several: which one ran a statement is not known here; the database is the same
        out["replica"] = {k: v for k, v in _server(replicas[0]).items() if k == "db.namespace"}
    return out


def _server(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    attributes: dict[str, Any] = {}
    database = parts.path.lstrip("/")
    if database:
        attributes["db.namespace"] = database
    host = parts.netloc.rpartition("@")[2].split(",")[0]  # a multi-host URL: its first host
    if host:
        name, _, port = host.rpartition(":") if host.count(":") == 1 else (host, "", "")
        attributes["server.address"] = name
        if port.isdigit():
            attributes["server.port"] = int(port)
    return attributes
