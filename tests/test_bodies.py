"""A request body arrives whole within DATASVC_BODY_TIMEOUT, before the request takes a slot; else 408."""

from __future__ import annotations

import logging
import re
import socket
from contextlib import contextmanager

import httpx2
import orjson

from tests.support.rawhttp import statuses
from tests.support.servers import ThreadServer
from tests.support.waits import until_blocking

STALLED = (
    b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


def _connect(base_url: str) -> socket.socket:
    host, port = base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def _until_closed(sock: socket.socket) -> bytes:
    received = b""
    while data := sock.recv(65536):
        received += data
    return received


def _closed_count(base_url: str, reason: str) -> float:
    text = httpx2.get(base_url + "/metrics").text
    match = re.search(rf'^datasvc_http_closed_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_body_that_does_not_arrive_in_time_is_408_and_closes(settings):
    with _serve(settings.with_overrides(body_timeout=0.3)) as base_url:
        sock = _connect(base_url)
        sock.sendall(STALLED)
        raw = _until_closed(sock)  # the socket's 10 s timeout bounds a server that never answers
        sock.close()
        assert _closed_count(base_url, "body-timeout") == 1
    assert statuses(raw) == [408]
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/problem+json" in head
    assert b"connection: close" in head
    assert b"x-request-id: " in head
    assert orjson.loads(body)["type"] == "urn:datasvc:problem:request-timeout"


def test_a_stalled_upload_holds_no_slot(settings):
    """With one slot, an upload that never completes leaves it to the next caller (no 503)."""
    with _serve(settings.with_overrides(max_in_flight=1, body_timeout=30)) as base_url:
        stalled = [_connect(base_url) for _ in range(3)]
        for sock in stalled:
            sock.sendall(STALLED)
        with httpx2.Client(base_url=base_url) as client:
            created = client.post(
                "/api/v1/users",
                json={"email": "a@b.io", "username": "alice", "hashed_password": "$2b$12$" + "a" * 53},
            )
            assert created.status_code == 201, created.text
            assert client.get(f"/api/v1/users/{created.json()['id']}").status_code == 200
        for sock in stalled:
            sock.close()


def test_a_client_gone_mid_upload_is_counted_as_client_closed_not_an_error(settings, caplog):
    caplog.set_level(logging.INFO, logger="datasvc.client")
    with _serve(settings) as base_url:
        sock = _connect(base_url)
        sock.sendall(STALLED)
        sock.close()
        until_blocking(lambda: _closed_count(base_url, "client-closed") == 1, what="client-closed counted")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    closed = [r for r in caplog.records if r.name == "datasvc.client"]
    assert [r.getMessage() for r in closed] == ["client closed the connection mid-request"]
    assert closed[0].exc_info is None


@contextmanager
def _serve(settings):
    with ThreadServer(settings) as server:
        yield server.base_url
