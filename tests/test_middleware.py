"""RequestContextMiddleware: request id, Server-Timing, and the access log switch."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.settings import Settings


def test_every_request_gets_a_hex_id_and_a_database_clock(client: TestClient) -> None:
    response = client.get("/health/ready")
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert re.fullmatch(r"db;dur=\d+\.\d\d", response.headers["server-timing"])


def test_access_log_off_writes_none(settings: Settings, capfd: pytest.CaptureFixture[str]) -> None:
    app = create_app(settings.with_overrides(access_log=False))
    with TestClient(app) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200
    assert "x-request-id" in response.headers
    assert app.state.access_log is None
    assert '"datasvc.access"' not in capfd.readouterr().out
