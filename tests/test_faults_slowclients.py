"""Issue 21.2-4: clients that stall their upload, do not read their answers, or never finish a head hold
no slot: a normal caller beside them keeps being served (no 503), at about its rate alone (perf)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from datasvc.settings import Settings
from tests.support import load
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

TOKEN = "normal-caller-token-0123456789"
SCENARIOS = {
    # A POST head announcing 1000 bytes, then one: the body never completes (DATASVC_BODY_TIMEOUT).
    "stalled-uploads": (
        100,
        b"POST /api/v1/users HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000"
        b"\r\n\r\n{",
    ),
    # A public document asked for 120 times in one write, the answers never read (auth on).
    "pipeliners": (130, b"GET /openapi.json HTTP/1.1\r\nHost: x\r\n\r\n" * 120),
    # Half a head, never completed (DATASVC_HEAD_TIMEOUT).
    "slowloris": (5000, b"GET /api/v1/users/1 HTTP/1.1\r\nHost: x\r\nX-Slow: "),
}


@contextmanager
def _hostile(port: int, count: int, payload: bytes) -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                sock.send(payload)  # what fits; the rest is never sent, nothing is ever read
            held.append(sock)
        yield held
    finally:
        for sock in held:
            sock.close()


async def _ratio(settings: Settings, tmp_path, scenario: str) -> tuple[float, str]:
    count, payload = SCENARIOS[scenario]
    settings = settings.with_overrides(
        auth_tokens=f"normal users:read {hashlib.sha256(TOKEN.encode()).hexdigest()}",
        max_connections=count + 200,  # the bound is not what this test is about (tests/test_protocol.py)
        head_timeout=60.0,
        body_timeout=60.0,
    )
    with ProcessServer(settings, tmp_path / "serve.log") as server:
        path = "/api/v1/users/1"  # 404 for a token holder: answered by the database, like any lookup
        await load.hammer(server.base_url, path, workers=4, seconds=0.5, token=TOKEN)  # warm up
        alone = await load.hammer(server.base_url, path, workers=4, seconds=2.0, token=TOKEN)
        with _hostile(server.port, count, payload):
            beside = await load.hammer(server.base_url, path, workers=4, seconds=2.0, token=TOKEN)
    figure = (
        f"{scenario}: {count} hostile connections; normal caller alone {load.summary(alone)}, "
        f"beside them {load.summary(beside)}"
    )
    assert {a.status for a in alone} == {404}, figure
    assert {a.status for a in beside} == {404}, figure  # answered, never shed
    return len(beside) / len(alone), figure


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_hostile_clients_hold_no_slot_and_the_normal_caller_is_served(settings, tmp_path, scenario):
    _, figure = await _ratio(settings, tmp_path, scenario)
    print(figure)


@pytest.mark.perf
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_hostile_clients_leave_the_normal_caller_its_goodput(settings, tmp_path, scenario):
    ratio, figure = await _ratio(settings, tmp_path, scenario)
    print(f"{figure}; ratio {ratio:.2f}")
    assert ratio >= 0.8, figure
