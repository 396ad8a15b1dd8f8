"""What the HTTP protocol answers itself, below the app: problem+json with a request id, like the app."""

from __future__ import annotations

import orjson
import pytest

from tests.support.rawhttp import exchange, statuses
from tests.support.servers import ThreadServer
from tests.support.values import HASH


@pytest.fixture
def live(settings):
    with ThreadServer(settings) as server:
        yield server.base_url


def _problem(raw: bytes) -> tuple[dict[bytes, bytes], dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    return headers, orjson.loads(body)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"FROB /health HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n",
        b"GET /he alth HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS ClientHello on the plain port
        b"GET /health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
    ],
    ids=["unknown-method", "bad-version", "space-in-target", "tls-hello", "bad-header-name"],
)
def test_an_unparsable_request_is_a_400_problem_with_a_request_id(live, request_bytes):
    raw = exchange(live, request_bytes)
    assert statuses(raw) == [400]
    headers, problem = _problem(raw)
    assert headers[b"content-type"] == b"application/problem+json"
    assert problem["type"] == "urn:datasvc:problem:bad-request"
    assert problem["status"] == 400
    assert len(headers[b"x-request-id"]) == 32
    assert problem["request_id"] == headers[b"x-request-id"].decode()
    assert headers[b"connection"] == b"close"


def test_a_431_echoes_the_callers_request_id(live):
    many = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(400))
    raw = exchange(live, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Request-ID: caller-7\r\n" + many + b"\r\n")
    headers, problem = _problem(raw)
    assert statuses(raw) == [431]
    assert headers[b"x-request-id"] == b"caller-7"
    assert problem["request_id"] == "caller-7"


# -- the bound on a request's head (DATASVC_MAX_HEADER_BYTES) -----------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        b"X-Big: " + b"a" * 20_000 + b"\r\n",
        b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 50) for i in range(400)),
        b"X-Huge: " + b"a" * 4_000_000 + b"\r\n",
    ],
    ids=["one-20k-header", "400-headers", "4MB-streamed"],
)
def test_a_request_head_over_the_bound_is_431_problem(live, headers):
    raw = exchange(live, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert statuses(raw) == [431]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head
    problem = orjson.loads(body)
    assert problem["type"] == "urn:datasvc:problem:headers-too-large"
    assert b"x-request-id: " + problem["request_id"].encode() + b"\r\n" in head + b"\r\n"


def test_a_long_url_counts_toward_the_bound(live):
    raw = exchange(live, b"GET /health?" + b"q" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert statuses(raw) == [431]


def test_heads_under_the_bound_and_big_bodies_pass_pipelined(live):
    """No false 431: a 15 kB head, then a 60 kB body arriving in the same reads, then a third request."""
    body = orjson.dumps({"email": "a@example.org", "username": "alice", "hashed_password": HASH, "bio": "b"})
    big = orjson.dumps({"login": "x" * 200, "pad": "p" * 60_000})
    requests = [
        b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 15_000 + b"\r\n\r\n",
        b"POST /api/v1/auth/lookup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(big)
        + big,
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
        + body,
    ]
    raw = exchange(live, b"".join(requests), chunk=1 << 20)
    assert statuses(raw) == [200, 422, 201]


@pytest.mark.parametrize(
    ("bad", "status"),
    [
        (b"FROB / HTTP/1.1\r\n\r\n", 400),
        (b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    ],
    ids=["unparsable", "too-large"],
)
def test_pipelined_requests_before_a_refused_one_are_answered_first(live, bad, status):
    good = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    raw = exchange(live, good + good + bad, chunk=1 << 20)
    assert statuses(raw) == [200, 200, status]
