"""RequestContextMiddleware: request id, Server-Timing, and the access log switch."""

from __future__ import annotations

import logging
import re

import pytest
from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.settings import Settings


def _access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "datasvc.access"]


def test_every_request_gets_a_hex_id_and_a_database_clock(client: TestClient) -> None:
    response = client.get("/health/ready")
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])
    assert re.fullmatch(r"db;dur=\d+\.\d\d", response.headers["server-timing"])


def test_access_log_writes_one_record_per_request(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="datasvc.access"):
        response = client.get("/health/ready")
    (record,) = _access_records(caplog)
    assert record.__dict__["request_id"] == response.headers["x-request-id"]
    assert record.__dict__["status"] == 200


def test_access_log_off_writes_none(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(settings.with_overrides(access_log=False))
    with TestClient(app) as client, caplog.at_level(logging.INFO, logger="datasvc.access"):
        response = client.get("/health/ready")
    assert response.status_code == 200
    assert "x-request-id" in response.headers
    assert _access_records(caplog) == []
