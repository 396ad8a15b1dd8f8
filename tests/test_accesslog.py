"""The access log: its fields, no line lost on a crash or on SIGTERM, drop-and-count when stdout blocks."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import httpx2
import orjson
import pytest
from starlette.testclient import TestClient
from starlette.types import Receive, Scope, Send

from datasvc.accesslog import AccessLog
from datasvc.metrics import Metrics
from datasvc.middleware import RequestContextMiddleware
from datasvc.settings import Settings
from tests.support import load
from tests.support.access import access_lines
from tests.support.servers import ProcessServer
from tests.support.values import HASH

FIELDS = {
    "ts",
    "level",
    "logger",
    "msg",
    "request_id",
    "method",
    "path",
    "status",
    "duration_ms",
    "db_ms",
    "statements",
    "caller",
}


def test_one_line_per_request_with_every_field(client: TestClient, capfd: pytest.CaptureFixture[str]) -> None:
    access_lines(client.app, capfd)  # whatever start-up wrote
    body = {"email": "alice@example.org", "username": "alice", "hashed_password": HASH}
    created = client.post("/api/v1/users", json=body)
    missing = client.get("/api/v1/users/999999", headers={"X-Request-ID": "caller-id.1"})
    lines = access_lines(client.app, capfd)
    assert [set(line) for line in lines] == [FIELDS, FIELDS]
    first, second = lines
    assert first["request_id"] == created.headers["x-request-id"]
    assert (first["method"], first["path"], first["status"]) == ("POST", "/api/v1/users", 201)
    assert first["statements"] == 1
    assert 0 < first["db_ms"] <= first["duration_ms"]
    assert (first["level"], first["logger"], first["msg"], first["caller"]) == (
        "info",
        "datasvc.access",
        "request",
        None,
    )
    assert second["request_id"] == "caller-id.1" == missing.headers["x-request-id"]
    assert (second["path"], second["status"]) == ("/api/v1/users/999999", 404)
    # RFC 3339 UTC with milliseconds, as the logging formatter wrote it.
    assert len(first["ts"]) == len("2026-01-01T00:00:00.000+00:00")
    assert first["ts"].endswith("+00:00")


def _pipe_log(**kw: int) -> tuple[AccessLog, int]:
    read_end, write_end = os.pipe()
    return AccessLog(write_end, interval=0.01, **kw), read_end


def _read_all(fd: int) -> list[dict[str, object]]:
    os.set_blocking(fd, False)
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return [orjson.loads(line) for line in b"".join(chunks).splitlines()]


def test_a_crashing_request_still_gets_its_line() -> None:
    async def crash(scope: Scope, receive: Receive, send: Send) -> None:
        raise RuntimeError("boom")

    log, read_end = _pipe_log()
    app = RequestContextMiddleware(crash, max_body_bytes=1024, access_log=log)
    response = TestClient(app, raise_server_exceptions=False).get("/anything")  # no lifespan: plain ASGI
    log.close()
    (line,) = _read_all(read_end)
    assert response.status_code == 500
    assert (line["status"], line["request_id"]) == (500, response.headers["x-request-id"])


def test_blocked_stdout_drops_and_counts_never_stalls() -> None:
    log, read_end = _pipe_log(max_pending=100)
    metrics = Metrics()
    metrics.register(log)
    line = {"request_id": "x" * 32, "method": "GET", "path": "/api/v1/users/1", "status": 200}

    def flood() -> None:
        for _ in range(20_000):  # ~2 MB: far more than a pipe holds (64 kB) with nobody reading it
            log.write(line)

    # Queueing a line costs microseconds; a write blocked on the pipe would hold this loop for ever. The
    # join's bound only ends such a hang (the loop takes a fraction of a second, even on a loaded machine).
    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    writer.join(60)
    assert not writer.is_alive(), "a write to the access log blocked on a full pipe"
    assert log.dropped > 0
    assert f"datasvc_access_log_dropped_total {float(log.dropped)}" in metrics.render().decode()
    os.close(read_end)  # the blocked writer gets EPIPE, counts what it held, and stops
    log.close()


async def test_sigterm_loses_no_line(settings: Settings, tmp_path) -> None:
    # Lines wait up to 60 s to be written: whatever the log holds, the drain at shutdown wrote.
    settings = settings.with_overrides(access_log_flush=60.0)
    server = ProcessServer(settings, tmp_path / "serve.log", access_log=True)
    answered: list[str] = []
    stop = asyncio.Event()

    async def worker(c: httpx2.AsyncClient) -> None:
        while not stop.is_set():
            try:
                r = await c.get("/api/v1/users/1")
            except httpx2.HTTPError:
                return  # the server closed: no answer, so no line is owed
            answered.append(r.headers["x-request-id"])

    with server:
        async with load.client(server.base_url, connections=16) as c:
            workers = [asyncio.create_task(worker(c)) for _ in range(16)]
            deadline = time.monotonic() + 30
            while len(answered) < 300:  # a steady stream, with lines still queued when SIGTERM lands
                assert time.monotonic() < deadline, f"only {len(answered)} answers in 30 s"
                await asyncio.sleep(0.01)
            server.signal(signal.SIGTERM)
            code = await asyncio.to_thread(server.wait, settings.shutdown_timeout + 5)
            stop.set()
            await asyncio.gather(*workers)
    lines = [orjson.loads(x) for x in server.log_path.read_bytes().splitlines() if x.startswith(b"{")]
    logged = {line["request_id"] for line in lines if line.get("logger") == "datasvc.access"}
    assert code == 0
    missing = [rid for rid in answered if rid not in logged]
    assert missing == [], f"{len(missing)} of {len(answered)} answered requests have no access-log line"
