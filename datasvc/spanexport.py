"""How finished spans leave the process: the SDK's batch processor and OTLP/HTTP exporter, every drop counted.

A request only appends a span to the batch processor's queue; the processor's thread encodes a batch
(`datasvc.otlp`) and posts it. `SpanQueue` keeps that queue's bound itself, so every span that never
reaches the collector is counted: refused here when the queue is full, or counted by `_Counted` when its
export failed (the collector down, slow or refusing). `SpanCollector` reports both in ``/metrics``. A
collector that is down or hangs costs requests nothing: spans are dropped and counted.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from datasvc.otlp import OTLPExporter

if TYPE_CHECKING:
    from datasvc.settings import Settings

_DEFAULT_QUEUE = 2048  # the SDK's default OTEL_BSP_MAX_QUEUE_SIZE


class SpanQueue(SpanProcessor):
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

    @classmethod
    def create(cls, settings: Settings, exporter: SpanExporter | None = None) -> SpanQueue:
        """The SDK's batch processor (``OTEL_BSP_*``) to our OTLP exporter (``OTEL_EXPORTER_OTLP_*``);
        ``exporter`` replaces it (tests)."""
        counted = _Counted(exporter or OTLPExporter(endpoint=_traces_endpoint(settings)))
        max_queue = _env_int("OTEL_BSP_MAX_QUEUE_SIZE", _DEFAULT_QUEUE)
        return cls(BatchSpanProcessor(counted, max_queue_size=max_queue), counted, max_queue)

    @property
    def dropped(self) -> dict[str, int]:
        """Spans that never reached the collector, by why: the queue was full, or their export failed."""
        return {"queue_full": self.refused, "export_failed": self.exporter.failed}

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


class SpanCollector(Collector):
    """``datasvc_trace_spans_dropped_total{reason}``: spans the collector never got, read when scraped."""

    def __init__(self, queue: SpanQueue) -> None:
        self.queue = queue

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        dropped = CounterMetricFamily(
            "datasvc_trace_spans_dropped",
            "Spans never delivered to the OTLP collector: its queue was full, or their export failed.",
            labels=["reason"],
        )
        for reason, count in self.queue.dropped.items():
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


def _traces_endpoint(settings: Settings) -> str | None:
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    return None  # the SDK's default, http://localhost:4318/v1/traces


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default
