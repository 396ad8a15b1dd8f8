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

Spans leave through the SDK's batch processor, whose thread does the encoding and the HTTP: a request
only appends to its queue. `_Bounded` keeps that queue's bound itself, so every span that never reaches
the collector is counted (queue full: refused here; export failed: counted by `_Counted`) and reported in
``/metrics`` by `SpanCollector`. A collector that is down or hangs costs requests nothing: spans are
dropped and counted. `Tracing.close` flushes within the time it is given, then gives up.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import Scope

if TYPE_CHECKING:
    from datasvc.settings import Settings

log = logging.getLogger("datasvc.tracing")

SERVICE_NAME = "datasvc"
_DEFAULT_QUEUE = 2048  # the SDK's default OTEL_BSP_MAX_QUEUE_SIZE
_TRACEPARENT = b"traceparent"
_TRACESTATE = b"tracestate"


class Tracing:
    """The tracer provider of one app, its exporter behind the batch processor, and the request hook."""

    def __init__(
        self,
        provider: TracerProvider,
        processor: _Bounded,
        templates: Mapping[Any, str],
        servers: Mapping[str, dict[str, Any]],
    ) -> None:
        self.provider = provider
        self.processor = processor
        self.tracer = provider.get_tracer("datasvc")
        self.templates = templates  # endpoint -> route template, as the metrics use
        self.servers = servers  # target kind -> db.namespace, server.address, server.port
        self._propagator = TraceContextTextMapPropagator()

    @classmethod
    def create(
        cls,
        settings: Settings,
        templates: Mapping[Any, str],
        *,
        exporter: SpanExporter | None = None,
    ) -> Tracing:
        """The SDK set up from ``settings`` and its own variables; ``exporter`` replaces OTLP (tests)."""
        if exporter is None:
            exporter = OTLPSpanExporter(endpoint=_traces_endpoint(settings))
        detected = OTELResourceDetector().detect()  # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME
        name = settings.otel_service_name or detected.attributes.get("service.name") or SERVICE_NAME
        resource = Resource.create({"service.name": str(name)})
        # No atexit hook: `close` bounds the flush by the shutdown timeout, the SDK's own would wait 30 s.
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        counted = _Counted(exporter)
        max_queue = _env_int("OTEL_BSP_MAX_QUEUE_SIZE", _DEFAULT_QUEUE)
        processor = _Bounded(BatchSpanProcessor(counted, max_queue_size=max_queue), counted, max_queue)
        provider.add_span_processor(processor)
        return cls(provider, processor, templates, _servers(settings))

    def start(self, scope: Scope) -> RequestTrace:
        """The SERVER span of one HTTP request, a child of the caller's ``traceparent`` if it sent one."""
        traceparent = tracestate = None
        for name, value in scope["headers"]:
            if name == _TRACEPARENT:
                traceparent = value.decode("latin-1")
            elif name == _TRACESTATE:
                tracestate = value.decode("latin-1")
        parent: Context | None = None
        if traceparent is not None:
            carrier = {"traceparent": traceparent}
            if tracestate is not None:
                carrier["tracestate"] = tracestate
            parent = self._propagator.extract(carrier)
        span = self.tracer.start_span(scope["method"], parent, kind=SpanKind.SERVER)
        return RequestTrace(self, span)

    @property
    def dropped(self) -> dict[str, int]:
        """Spans that never reached the collector, by why: the queue was full, or their export failed."""
        return {"queue_full": self.processor.refused, "export_failed": self.processor.exporter.failed}

    def close(self, timeout: float) -> None:
        """Export what is queued and stop, waiting at most ``timeout`` seconds (a hung collector is left)."""
        done = threading.Thread(target=self.provider.shutdown, name="datasvc-tracing-shutdown", daemon=True)
        done.start()
        done.join(timeout)
        if done.is_alive():
            log.warning("spans not flushed within the shutdown timeout", extra={"timeout": timeout})


class RequestTrace:
    """One request's SERVER span and what its statements need to open theirs under it."""

    __slots__ = ("_context", "_tracing", "sampled", "span")

    def __init__(self, tracing: Tracing, span: Span) -> None:
        self._tracing = tracing
        self.span = span
        self.sampled = span.is_recording()
        self._context = set_span_in_context(span) if self.sampled else None

    def ids(self) -> tuple[str, str] | None:
        """The trace id and span id in hex (OTel's log fields), or None when there is no valid span."""
        ctx = self.span.get_span_context()
        if not ctx.is_valid:
            return None
        return f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"

    def statement(self, name: str, target: str) -> StatementSpan:
        """A CLIENT span for one statement sent now (call only when `sampled`)."""
        tracing = self._tracing
        attributes = {
            "db.system.name": "postgresql",
            "db.query.summary": name,
            "datasvc.db.target": target,
            **tracing.servers.get(target, {}),
        }
        span = tracing.tracer.start_span(name, self._context, kind=SpanKind.CLIENT, attributes=attributes)
        return StatementSpan(span)

    def waited(self, seconds: float, target: str) -> None:
        """The wait for a pooled connection, as an event with its duration on the server span."""
        if self.sampled:
            self.span.add_event(
                "db.client.connection.wait",
                {"db.client.connection.wait_time": seconds, "datasvc.db.target": target},
            )

    def end(self, scope: Scope, status: int, caller: str | None) -> None:
        """Name the span after the route template and close it with the status the client got."""
        span = self.span
        if self.sampled:
            method = scope["method"]
            route = self._tracing.templates.get(scope.get("endpoint"))
            attributes: dict[str, Any] = {
                "http.request.method": method,
                "http.response.status_code": status,
                "url.scheme": scope.get("scheme", "http"),
            }
            if route is not None:
                attributes["http.route"] = route
                span.update_name(f"{method} {route}")
            if caller is not None:
                attributes["enduser.id"] = caller
            if status >= 500:
                attributes["error.type"] = str(status)
                span.set_status(Status(StatusCode.ERROR))
            span.set_attributes(attributes)
        span.end()


class StatementSpan:
    """One statement's CLIENT span and the SQL comment that names it to PostgreSQL."""

    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def sql(self, text: str) -> str:
        """``text`` (``/* name */ SQL``) with ``/*traceparent='00-<trace>-<span>-01'*/`` after the name tag.

        sqlcommenter's format, with this span as the parent, so PostgreSQL's view of the statement leads
        to its span.
        """
        ctx = self.span.get_span_context()
        tag, sep, sql = text.partition(" */ ")
        return f"{tag}{sep}/*traceparent='00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01'*/ {sql}"

    def failed(self, exc: BaseException) -> None:
        """The statement raised: its SQLSTATE (when PostgreSQL sent one) and the error's type."""
        sqlstate = getattr(exc, "sqlstate", None)
        attributes = {"error.type": sqlstate or type(exc).__qualname__}
        if sqlstate:
            attributes["db.response.status_code"] = sqlstate
        self.span.set_attributes(attributes)
        self.span.set_status(Status(StatusCode.ERROR))

    def end(self) -> None:
        self.span.end()


class SpanCollector(Collector):
    """``datasvc_trace_spans_dropped_total{reason}``: spans the collector never got, read when scraped."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "datasvc_trace_spans_dropped",
            "Spans never delivered to the OTLP collector: its queue was full, or their export failed.",
            labels=["reason"],
        )
        for reason, count in self.tracing.dropped.items():
            dropped.add_metric([reason], count)
        yield dropped


class _Counted(SpanExporter):
    """The exporter, counting the spans whose export failed (the collector down, slow or refusing)."""

    def __init__(self, exporter: SpanExporter) -> None:
        self.exporter = exporter
        self.taken = 0  # spans the batch processor handed over (written by its thread only)
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.taken += len(spans)
        try:
            result = self.exporter.export(spans)
        except Exception:
            self.failed += len(spans)
            raise
        if result is not SpanExportResult.SUCCESS:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self.exporter.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.exporter.force_flush(timeout_millis)


class _Bounded(SpanProcessor):
    """The batch processor behind a bound of its own queue's size, so that what it would drop is counted.

    The SDK's queue drops its oldest span silently when full. Here a span is refused (and counted) when
    the spans handed over but not yet taken by the exporter fill the queue: an upper bound of the queue's
    length (the exporter counts a batch as taken just after popping it), so the SDK never drops one itself.
    """

    def __init__(self, processor: SpanProcessor, exporter: _Counted, max_queue: int) -> None:
        self.processor = processor
        self.exporter = exporter
        self.max_queue = max_queue
        self.handed = 0  # written by the event loop's thread only (spans end there)
        self.refused = 0

    def on_start(self, span: Any, parent_context: Context | None = None) -> None:
        pass

    def _on_ending(self, span: Any) -> None:
        pass

    def on_end(self, span: ReadableSpan) -> None:
        if self.handed - self.exporter.taken >= self.max_queue:
            self.refused += 1
            return
        self.handed += 1
        self.processor.on_end(span)

    def shutdown(self) -> None:
        self.processor.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.processor.force_flush(timeout_millis)


def _traces_endpoint(settings: Settings) -> str | None:
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    return None  # the SDK's default, http://localhost:4318/v1/traces


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


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default
