"""The Grafana dashboard (docs/grafana/datasvc.json) queries only metrics that ``/metrics`` really exposes.

The app runs with every feature that adds a metric family turned on (tokens and the per-caller limit, the
access log, a replica, tracing), so that every family the service can expose is declared in one scrape; a
panel that names a metric nobody exports (renamed, removed, misspelt) fails here rather than going blank.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.settings import PROJECT_ROOT, Settings
from tests.support.otlp import Receiver

DASHBOARD = PROJECT_ROOT / "docs" / "grafana" / "datasvc.json"
_METRIC = re.compile(r"\b(datasvc_[a-z0-9_]+)\b")
# The sample names a family of each type shows up as in the text format.
_SUFFIXES = {
    "counter": ("", "_total", "_created"),  # the TYPE line names a counter with or without its _total
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": ("",),
    "summary": ("", "_count", "_sum", "_created"),
}


def _queries(node: Any) -> list[str]:
    """Every PromQL expression in the dashboard: panel targets and template variable queries."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if (key in ("expr", "definition") and isinstance(value, str)) or (
                key == "query" and isinstance(value, str) and "datasvc_" in value
            ):
                found.append(value)
            else:
                found.extend(_queries(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_queries(item))
    return found


def _exposed(text: str) -> set[str]:
    """Every sample name the scrape's families can have, from their ``# TYPE`` lines."""
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            names.update(family + suffix for suffix in _SUFFIXES.get(kind, ("",)))
    return names


@pytest.fixture
def scrape(settings: Settings, tmp_path: Path) -> str:
    token = "dashboard-token"
    with Receiver() as receiver:
        everything = settings.with_overrides(
            auth_tokens=f"ops users:read {hashlib.sha256(token.encode()).hexdigest()}",
            caller_max_in_flight=4,
            replica_urls=settings.database_url or "",
            otel_exporter_otlp_endpoint=receiver.endpoint,
        )
        with TestClient(create_app(everything)) as client:
            headers = {"authorization": f"Bearer {token}"}
            assert client.get("/api/v1/users/1", headers=headers).status_code == 404  # a problem answer
            answer = client.get("/metrics", headers=headers)
            assert answer.status_code == 200
            return answer.text


def test_the_dashboard_queries_only_metrics_the_service_exposes(scrape: str) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    queried = {name for expr in _queries(dashboard) for name in _METRIC.findall(expr)}
    assert len(queried) >= 10, queried  # the panels were found at all
    assert sorted(queried - _exposed(scrape)) == []


def test_the_dashboard_covers_what_operators_watch() -> None:
    """Request rate and latency by route, problems by type, statements by name and target, the pool, shed
    and 429 answers, replica lag, dropped access-log lines and spans."""
    queried = " ".join(_queries(json.loads(DASHBOARD.read_text())))
    for needed in (
        "datasvc_http_request_duration_seconds_count",
        "histogram_quantile(0.5, sum by (le, route)",
        "histogram_quantile(0.99, sum by (le, route)",
        "datasvc_http_problems_total",
        "sum by (le, statement, target) (rate(datasvc_db_query_duration_seconds_bucket",
        'datasvc_db_pool_connections{job=~"$job",state="in_use"}',
        "datasvc_db_pool_waiting",
        'type="overloaded"',
        "datasvc_caller_limited_total",
        "datasvc_replica_lag_seconds",
        "datasvc_access_log_dropped_total",
        "datasvc_trace_spans_dropped_total",
    ):
        assert needed in queried, needed
