"""datasvc.otlp's encoding is the SDK's: decoded by opentelemetry-proto, our bytes equal the message the
SDK's own encoder builds from the same spans (every field, every attribute type, events, links, status,
resources and scopes), and the SDK's exporter sends them."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.sdk.util import BoundedList
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, SpanKind, Status, StatusCode, TraceFlags, TraceState
from opentelemetry.util.types import Attributes

from datasvc.otlp import Encoder, OTLPExporter
from tests.support.otlp import Receiver

T0 = 1_733_600_000_123_456_789
RESOURCE = Resource.create({"service.name": "datasvc", "deployment.environment.name": "test"})
OTHER_RESOURCE = Resource({"service.name": "other", "host.cores": 2}, schema_url="https://example.org/s")
SCOPE = InstrumentationScope("datasvc")
VERSIONED = InstrumentationScope("lib", "1.2.3", "https://example.org/scope", {"scope.flag": True})
ATTRIBUTES: Attributes = {
    "str": "value",
    "empty": "",
    "unicode": "Ünïcødé ✓",
    "long": "x" * 20_000,  # its length takes three bytes
    "int": 200,
    "zero": 0,
    "negative": -5,
    "big": 2**63 - 1,
    "smallest": -(2**63),
    "true": True,
    "false": False,
    "float": 0.25,
    "negative-zero": -0.0,
    "strings": ("a", "b"),
    "ints": (1, -2, 3),
    "floats": (1.5,),
    "bools": (True, False),
    "empty-array": (),
}


def _context(
    trace_id: int, span_id: int, *, remote: bool = False, state: TraceState | None = None
) -> SpanContext:
    return SpanContext(trace_id, span_id, remote, TraceFlags(TraceFlags.SAMPLED), state)


def _span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: SpanContext | None = None,
    attributes: Attributes = None,
    events: Sequence[Event] = (),
    links: Sequence[Link] = (),
    status: Status | None = None,
    resource: Resource = RESOURCE,
    scope: InstrumentationScope | None = SCOPE,
    state: TraceState | None = None,
    span_id: int = 0x1122334455667788,
) -> ReadableSpan:
    return ReadableSpan(
        name,
        _context(0x0AF7651916CD43DD8448EB211C80319C, span_id, state=state),
        parent,
        resource,
        attributes,
        events,
        links,
        kind,
        status=status or Status(StatusCode.UNSET),
        start_time=T0,
        end_time=T0 + 1_234_567,
        instrumentation_scope=scope,
    )


REMOTE_PARENT = _context(0x0AF7651916CD43DD8448EB211C80319C, 0xB7AD6B7169203331, remote=True)
LOCAL_PARENT = _context(0x0AF7651916CD43DD8448EB211C80319C, 0x00F067AA0BA902B7)
SPANS: dict[str, list[ReadableSpan]] = {
    "server": [
        _span(
            "GET /api/v1/users/{id}",
            kind=SpanKind.SERVER,
            parent=REMOTE_PARENT,
            state=TraceState([("vendor", "opaque"), ("other", "x")]),
            attributes={"http.request.method": "GET", "http.response.status_code": 200, "target": "primary"},
            events=[Event("db.client.connection.wait", {"wait_time": 0.002, "target": "primary"}, T0 + 5)],
        )
    ],
    "statement": [
        _span(
            "users.get_by_id",
            kind=SpanKind.CLIENT,
            parent=LOCAL_PARENT,
            attributes={"db.system.name": "postgresql", "server.port": 5432},
            status=Status(StatusCode.ERROR),
        )
    ],
    "every attribute type": [_span("attributes", attributes=ATTRIBUTES)],
    "every kind": [_span(kind.name, kind=kind) for kind in SpanKind],
    "status": [
        _span("ok", status=Status(StatusCode.OK)),
        _span("error with a description", status=Status(StatusCode.ERROR, "timed out")),
    ],
    "events": [
        _span(
            "events",
            events=[
                Event("bare", timestamp=T0),
                Event("attributes", {"exception.type": "ValueError", "count": 3, "ok": False}, T0 + 1),
            ],
        )
    ],
    "links": [
        _span(
            "links",
            attributes={"link.kind": "follows"},  # the same attribute in a span and in its link
            links=[
                Link(_context(0x1, 0x2, remote=True), {"link.kind": "follows"}),
                Link(_context(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF)),
            ],
        )
    ],
    "dropped events": [
        _span("dropped", events=BoundedList.from_seq(1, [Event("a", {}, T0), Event("b", {}, T0)]))
    ],
    "no scope, other resources": [
        _span("a", scope=None),
        _span("b", resource=OTHER_RESOURCE, scope=VERSIONED),
        _span("c", scope=VERSIONED),
        _span("d", resource=OTHER_RESOURCE),
        _span("e"),
    ],
    "a batch": [_span(f"users.get_by_id {i}", span_id=i + 1, attributes={"n": i % 7}) for i in range(600)],
}


@pytest.mark.parametrize("spans", SPANS.values(), ids=SPANS.keys())
def test_our_encoding_decodes_to_the_sdks_message(spans: list[ReadableSpan]) -> None:
    expected = encode_spans(spans)
    encoder = Encoder()
    for _ in range(2):  # the second time from what the first kept
        decoded = ExportTraceServiceRequest.FromString(encoder.encode(spans))
        assert decoded == expected


def test_an_attribute_it_cannot_encode_is_left_out_as_the_sdk_does() -> None:
    spans = [_span("odd", attributes={"fine": 1, "odd": object()})]  # type: ignore[dict-item]
    assert ExportTraceServiceRequest.FromString(Encoder().encode(spans)) == encode_spans(spans)


def test_the_sdks_exporter_sends_our_encoding() -> None:
    with Receiver() as receiver:
        exporter = OTLPExporter(endpoint=receiver.endpoint + "/v1/traces")
        assert exporter.export(SPANS["server"] + SPANS["statement"]) is SpanExportResult.SUCCESS
        got = receiver.wait_for(lambda spans: len(spans) == 2)
        exporter.shutdown()
    assert [s.name for s in got] == ["GET /api/v1/users/{id}", "users.get_by_id"]
    assert got[0].attributes == {
        "http.request.method": "GET",
        "http.response.status_code": 200,
        "target": "primary",
    }
    assert got[1].parent_span_id == f"{LOCAL_PARENT.span_id:016x}"
