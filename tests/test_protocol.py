"""What the HTTP protocol answers itself, below the app: problem+json with a request id, like the app."""

from __future__ import annotations

import re
import socket
from contextlib import contextmanager

import httpx2
import orjson
import pytest

from datasvc.protocol import MAX_PIPELINED
from tests.support.rawhttp import connect, exchange, read_until_closed, statuses
from tests.support.servers import ThreadServer
from tests.support.values import HASH
from tests.support.waits import until_blocking


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


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: xchunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked, gzip\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    ],
    ids=["no-host", "two-hosts", "xchunked", "chunked-not-last", "websocket"],
)
def test_bad_framing_is_a_400_problem_before_any_handler(live, request_bytes):
    """RFC 9112 3.2 (one Host) and 6.3 (chunked last, else 400 and close); WebSocket is not served."""
    raw = exchange(live, request_bytes)
    assert statuses(raw) == [400]
    headers, problem = _problem(raw)
    assert headers[b"content-type"] == b"application/problem+json"
    assert problem["type"] == "urn:datasvc:problem:bad-request"
    assert len(headers[b"x-request-id"]) == 32
    assert headers[b"connection"] == b"close"
    assert headers[b"date"].endswith(b" GMT")  # RFC 9110 6.6.1: an origin server with a clock sends it


def test_http_1_0_needs_no_host_and_other_upgrades_are_ignored(live):
    assert statuses(exchange(live, b"GET /health HTTP/1.0\r\n\r\n")) == [200]
    h2c = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
    raw = exchange(live, h2c + b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
    assert statuses(raw) == [200]
    assert b"\r\nconnection: close\r\n" in raw.lower()


def test_protocol_answers_carry_date(live):
    for request_bytes in (
        b"FROB / HTTP/1.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n",
    ):
        headers, _ = _problem(exchange(live, request_bytes))
        assert headers[b"date"].endswith(b" GMT")


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


# -- bounds on what one connection may hold ------------------------------------------------------


def _closed_within(sock: socket.socket, seconds: float) -> bytes:
    """What the server sent before closing; fails if it is still open after ``seconds``."""
    sock.settimeout(seconds)
    try:
        return read_until_closed(sock)
    except TimeoutError:
        raise AssertionError(f"the connection was still open after {seconds} s") from None


def test_a_head_that_does_not_arrive_in_time_closes_the_connection(settings):
    with _serve(settings.with_overrides(head_timeout=0.3)) as base_url:
        silent = connect(base_url)
        partial = connect(base_url)
        partial.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        kept = connect(base_url)
        kept.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(kept.recv(65536)) == [200]
        # A generous bound: the timeout is 0.3 s; 10 s only stops a server that never closes.
        assert _closed_within(silent, 10) == b""
        assert _closed_within(partial, 10) == b""
        # A keep-alive connection that has answered then sends half a head is closed the same way.
        kept.sendall(b"GET /health HTTP/1.1\r\nHo")
        assert _closed_within(kept, 10) == b""
        for sock in (silent, partial, kept):
            sock.close()


def _closed_count(base_url: str, reason: str) -> float:
    text = httpx2.get(base_url + "/metrics").text
    match = re.search(rf'^datasvc_http_closed_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_client_that_does_not_read_is_disconnected_after_the_send_timeout(settings):
    """Four 1.4 MB documents asked for and never read: the send buffer stays full, the server aborts."""
    with _serve(settings.with_overrides(send_timeout=0.5)) as base_url:
        sock = connect(base_url)
        sock.sendall(b"GET /docs/swagger-ui-bundle.js HTTP/1.1\r\nHost: x\r\n\r\n" * 4)
        until_blocking(lambda: _closed_count(base_url, "send-timeout") == 1, what="the send timeout")
        assert len(_closed_within(sock, 10)) < 4 * 1_400_000  # aborted: what was not sent is dropped
        sock.close()


def test_pipelining_is_bounded_per_connection(live):
    # HEAD: answered by the app (the protocol answers GET /health itself, pipelining nothing).
    burst = b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\n" * (MAX_PIPELINED + 5)
    raw = exchange(live, burst, chunk=1 << 20)
    # The one being answered, MAX_PIPELINED waiting behind it, then a 503 and the connection closed.
    assert statuses(raw) == [200] * (MAX_PIPELINED + 1) + [503]
    assert b"retry-after: 1\r\n" in raw


def test_connections_past_the_bound_are_refused_at_once_and_open_ones_served(settings):
    with _serve(settings.with_overrides(max_connections=3)) as base_url:
        held = [connect(base_url) for _ in range(3)]
        held[0].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert statuses(held[0].recv(65536)) == [200]
        refused = connect(base_url)
        raw = _closed_within(refused, 10)
        assert statuses(raw) == [503]
        headers, problem = _problem(raw)
        assert problem["type"] == "urn:datasvc:problem:overloaded"
        assert headers[b"retry-after"] == b"1"
        for sock in held:  # the connections already open keep being served
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            assert statuses(sock.recv(65536)) == [200]
        for sock in (*held, refused):
            sock.close()


@contextmanager
def _serve(settings):
    with ThreadServer(settings) as server:
        yield server.base_url
