"""Spans in OTLP's protobuf (``ExportTraceServiceRequest``), written directly, and the SDK's OTLP/HTTP
exporter sending that.

The SDK's exporter encodes a batch by building one protobuf object per span, attribute and value, then
serializing them: with every request sampled, more CPU than the request itself. `encode` writes the
same bytes' meaning straight from the `ReadableSpan` records: the fields the SDK's encoder
(`opentelemetry.exporter.otlp.proto.common.trace_encoder.encode_spans`) sets, with the same values,
grouped the same way (resource, then instrumentation scope). The parts that repeat from span to span
(an attribute's key and value, a resource, a scope) are encoded once and kept. tests/test_otlp.py decodes
our bytes with opentelemetry-proto and compares them with the SDK's own message on varied spans.

`OTLPExporter` is the SDK's `OTLPSpanExporter` (its endpoint, headers, timeout, compression, retries
and HTTP session) with only the encoding replaced. Its ``export`` repeats the SDK's few lines around the
encoding, on private attributes (``_shutdown``, ``_metrics``, ``_max_request_size``, ``_client``):
pinned in pyproject.toml and guarded by tests/test_private_apis.py.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace.span import DEFAULT_TRACE_STATE

log = logging.getLogger("datasvc.otlp")

_CACHED = 4096  # distinct attributes kept encoded; past that, new ones are encoded each time
_SHORT = 256  # longer attribute values are not kept
_DOUBLE = struct.Struct("<d")


class Encoder:
    """`encode`, with the encoding of the attributes, resources and scopes seen before kept."""

    def __init__(self) -> None:
        self._pairs: dict[tuple[int, str, type, Any], bytes] = {}  # (tag, key, type, value)
        self._resources: dict[Any, bytes] = {}
        self._scopes: dict[Any, bytes] = {}
        self._names: dict[str, bytes] = {}
        self._sets: dict[tuple[int, tuple[tuple[str, Any], ...], tuple[type, ...]], bytes] = {}

    def encode(self, spans: Iterable[ReadableSpan]) -> bytes:
        """``spans`` as a serialized ``ExportTraceServiceRequest``."""
        grouped: dict[Any, dict[Any, list[bytes]]] = {}
        resource = scope = None
        encoded: list[bytes] = []
        for span in spans:
            # Grouped by equality, as the SDK does, but a Resource's hash is a JSON dump of its
            # attributes: looked up only when a span's differs (by identity) from the one before.
            if span.resource is not resource or span.instrumentation_scope is not scope or not grouped:
                resource, scope = span.resource, span.instrumentation_scope
                encoded = grouped.setdefault(resource, {}).setdefault(scope or None, [])
            encoded.append(self._span(span))
        out = []
        for res, scopes in grouped.items():
            body = [self._resource(res)]
            for scoped, parts in scopes.items():
                spans_part = b"".join([b"\x12" + _varint(len(part)) + part for part in parts])
                schema = _string(0x1A, scoped.schema_url if scoped else None)
                body.append(_field(0x12, self._scope(scoped) + spans_part + schema))
            body.append(_string(0x1A, res.schema_url))
            out.append(_field(0x0A, b"".join(body)))
        return b"".join(out)

    def _span(self, span: ReadableSpan) -> bytes:
        # The SDK's records read through their fields, not their properties (a Python call each, and
        # an isinstance of an ABC for each dropped count): tests/test_otlp.py holds the result equal to
        # the SDK's encoding, so a change of these fields fails there.
        context: Any = span._context
        parent: Any = span._parent
        trace_id, span_id, remote = context[0], context[1], parent is not None and parent[2]
        parts = [b"\x0a\x10" + trace_id.to_bytes(16, "big") + b"\x12\x08" + span_id.to_bytes(8, "big")]
        state = context[4]
        if state is not DEFAULT_TRACE_STATE and state:
            parts.append(_string(0x1A, ",".join([f"{key}={value}" for key, value in state.items()])))
        if parent:
            parts.append(b"\x22\x08" + parent[1].to_bytes(8, "big"))
        name = self._names.get(span._name)
        if name is None:
            name = _string(0x2A, span._name)
            if len(self._names) < _CACHED:
                self._names[span._name] = name
        parts.append(name)
        parts.append(_KINDS[span._kind._value_])
        start, end = span._start_time, span._end_time
        if start:
            parts.append(b"\x39" + start.to_bytes(8, "little"))
        if end:
            parts.append(b"\x41" + end.to_bytes(8, "little"))
        attributes = span._attributes
        if attributes:
            parts.append(self._attributes(0x4A, attributes))
            if type(attributes) is not dict:
                parts.append(_uint(0x50, span.dropped_attributes))
        events = span._events
        if events:
            for event in events:
                body = _fixed64(0x09, event._timestamp) + _string(0x12, event._name)
                if event._attributes:
                    body += self._attributes(0x1A, event._attributes)
                    if type(event._attributes) is not dict:
                        body += _uint(0x20, event.dropped_attributes)
                parts.append(_field(0x5A, body))
            if type(events) not in _PLAIN:
                parts.append(_uint(0x60, span.dropped_events))
        links = span._links
        if links:
            for link in links:
                linked = link.context
                body = b"\x0a\x10" + linked.trace_id.to_bytes(16, "big")
                body += b"\x12\x08" + linked.span_id.to_bytes(8, "big")
                body += self._attributes(0x22, link.attributes) + _uint(0x28, link.dropped_attributes)
                body += _LINK_FLAGS[linked.is_remote]
                parts.append(_field(0x6A, body))
            if type(links) not in _PLAIN:
                parts.append(_uint(0x70, span.dropped_links))
        status = span._status
        description = status._description
        if description:
            parts.append(_field(0x7A, _string(0x12, description) + _uint(0x18, status._status_code._value_)))
        else:
            parts.append(_STATUSES[status._status_code._value_])
        parts.append(_SPAN_FLAGS[remote])
        return b"".join(parts)

    def _attributes(self, tag: int, attributes: Mapping[str, Any] | None) -> bytes:
        """Each attribute as a ``KeyValue`` field ``tag``; a set of them or one seen before as it was encoded.

        A whole set is looked up by its items and their types (``True == 1``, but not as attributes),
        unless it holds a float (``-0.0 == 0.0``) or a value that cannot be hashed.
        """
        if not attributes:
            return b""
        kinds = tuple(map(type, attributes.values()))
        whole = None
        if float not in kinds:
            whole = (tag, tuple(attributes.items()), kinds)
            try:
                known = self._sets.get(whole)
            except TypeError:  # a list, say
                whole = known = None
            if known is not None:
                return known
        encoded = self._each(tag, attributes)
        if whole is not None and len(self._sets) < _CACHED:
            self._sets[whole] = encoded
        return encoded

    def _each(self, tag: int, attributes: Mapping[str, Any]) -> bytes:
        parts = []
        for key, value in attributes.items():
            kind = type(value)
            cacheable = kind in _CACHEABLE
            if cacheable:
                known = self._pairs.get((tag, key, kind, value))
                if known is not None:
                    parts.append(known)
                    continue
            try:
                pair = _string(0x0A, key) + _field(0x12, _value(value))
            except TypeError:  # as the SDK's encoder: the attribute is left out, the span is sent
                log.exception("attribute not encoded", extra={"key": key})
                continue
            encoded = bytes((tag,)) + _varint(len(pair)) + pair
            if cacheable and len(self._pairs) < _CACHED and (kind is not str or len(value) <= _SHORT):
                self._pairs[(tag, key, kind, value)] = encoded
            parts.append(encoded)
        return b"".join(parts)

    def _resource(self, resource: Any) -> bytes:
        """``resource`` (field 1 of ResourceSpans), encoded once (a process has one or two)."""
        encoded = self._resources.get(resource)
        if encoded is None:
            encoded = _field(0x0A, self._attributes(0x0A, resource.attributes))
            if len(self._resources) < _CACHED:
                self._resources[resource] = encoded
        return encoded

    def _scope(self, scope: Any) -> bytes:
        """The instrumentation scope (field 1 of ScopeSpans), encoded once."""
        encoded = self._scopes.get(scope)
        if encoded is None:
            body = b""
            if scope is not None:
                attributes = self._attributes(0x1A, scope.attributes)
                body = _string(0x0A, scope.name) + _string(0x12, scope.version) + attributes
            encoded = _field(0x0A, body)
            if len(self._scopes) < _CACHED:
                self._scopes[scope] = encoded
        return encoded


class OTLPExporter(OTLPSpanExporter):
    """The SDK's OTLP/HTTP span exporter, encoding with an `Encoder`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.encoder = Encoder()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._shutdown:
            log.warning("Exporter already shutdown, ignoring batch")
            return SpanExportResult.FAILURE
        with self._metrics.export_operation(len(spans)) as result:
            try:
                data = self.encoder.encode(spans)
            except Exception as error:  # as the SDK's: a batch that cannot be encoded fails, nothing more
                log.exception("Failed to encode span batch")
                result.error = error
                return SpanExportResult.FAILURE
            limit = self._max_request_size
            if limit > 0 and len(data) > limit:
                log.warning("Dropping span batch: %d bytes exceed max_request_size %d", len(data), limit)
                result.error = ValueError(f"span batch of {len(data)} bytes over max_request_size {limit}")
                return SpanExportResult.FAILURE
            sent = self._client.export(data)
            if not sent.success:
                result.error = sent.error
                if sent.status_code is not None:
                    result.error_attrs = {"http.response.status_code": sent.status_code}
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS


# Protobuf's wire format: a field is its tag (field number << 3 | wire type) and its value; a message
# or string field's value is its length, then its bytes. The tags are written below as those bytes.

_VARINTS = [bytes((i,)) for i in range(0x80)] + [
    bytes((0x80 | i & 0x7F, i >> 7)) for i in range(0x80, 0x4000)
]
_KINDS = [bytes((0x30, value + 1)) for value in range(5)]  # OTLP's SpanKind: the SDK's plus one (field 6)
# ``flags`` (fixed32): "has is_remote" always, "is remote" for a remote parent (span: field 16, link: 6).
_SPAN_FLAGS = {False: b"\x85\x01\x00\x01\x00\x00", True: b"\x85\x01\x00\x03\x00\x00"}
_LINK_FLAGS = {False: b"\x35\x00\x01\x00\x00", True: b"\x35\x00\x03\x00\x00"}
_CACHEABLE = (str, int, bool)  # not float: -0.0 == 0.0 and nan != nan
_PLAIN = (list, tuple)  # a span's events or links that cannot have dropped any (a BoundedList can)


def _varint(n: int) -> bytes:
    if n < 0x4000:
        return _VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append(0x80 | n & 0x7F)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, body: bytes) -> bytes:
    """A message (or bytes) field, present even when empty, as the SDK's encoder sets it."""
    return bytes((tag,)) + _varint(len(body)) + body


def _string(tag: int, value: str | None) -> bytes:
    """A string field, absent when empty (proto3)."""
    if not value:
        return b""
    data = value.encode()
    return bytes((tag,)) + _varint(len(data)) + data


def _uint(tag: int, value: int | None) -> bytes:
    """A varint field, absent when zero (proto3)."""
    if not value:
        return b""
    return bytes((tag,)) + _varint(value)


def _fixed64(tag: int, value: int | None) -> bytes:
    if not value:
        return b""
    return bytes((tag,)) + value.to_bytes(8, "little")


def _value(value: Any) -> bytes:
    """An ``AnyValue``'s fields: one of them, present even when zero (a oneof), as the SDK's encoder."""
    if value is None:
        return b""
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, str):
        data = value.encode()
        return b"\x0a" + _varint(len(data)) + data
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: a negative one in ten bytes
    if isinstance(value, float):
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bytes):
        return b"\x3a" + _varint(len(value)) + value
    if isinstance(value, Sequence):
        return _field(0x2A, b"".join([_field(0x0A, _value(v)) for v in value]))
    if isinstance(value, Mapping):
        pairs = [_field(0x0A, _string(0x0A, str(k)) + _field(0x12, _value(v))) for k, v in value.items()]
        return _field(0x32, b"".join(pairs))
    raise TypeError(f"Invalid type {type(value)} of value {value}")


_STATUSES = [_field(0x7A, _uint(0x18, code)) for code in range(3)]  # a status without a description
