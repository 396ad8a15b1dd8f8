"""``GET /metrics``: requests by route template, statements by registry name, the pool."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from datasvc.db import Database
from datasvc.metrics import Metrics
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT
from tests.support.values import HASH
from tests.support.waits import until

USER = {"email": "metrics@example.com", "username": "metrics_user", "hashed_password": HASH}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape as ``{(name, sorted labels): value}``."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


def _request_count(samples, route: str, method: str, status: str) -> float:
    labels = (("method", method), ("route", route), ("status", status))
    return float(samples.get(("datasvc_http_request_duration_seconds_count", labels), 0.0))


def test_requests_are_counted_by_route_template_and_status(client):
    created = client.post("/api/v1/users", json=USER)
    assert created.status_code == 201
    user_id = created.json()["id"]
    assert client.get(f"/api/v1/users/{user_id}").status_code == 200
    assert client.get("/api/v1/users/987654321").status_code == 404
    assert client.get("/no/such/route/123").status_code == 404

    samples = _scrape(client)
    assert _request_count(samples, "/api/v1/users", "POST", "201") == 1
    assert _request_count(samples, "/api/v1/users/{id}", "GET", "200") == 1
    assert _request_count(samples, "/api/v1/users/{id}", "GET", "404") == 1
    assert _request_count(samples, "unmatched", "GET", "404") == 1
    routes = {dict(labels).get("route") for (_, labels) in samples}
    assert not any(r and ("987654321" in r or "/no/such" in r) for r in routes)  # no raw paths as labels


def test_statements_are_timed_by_registry_name(client):
    user_id = client.post("/api/v1/users", json=USER).json()["id"]
    for _ in range(3):
        client.get(f"/api/v1/users/{user_id}")
    samples = _scrape(client)
    by_id = (
        "datasvc_db_query_duration_seconds_count",
        (("statement", "users.get_by_id"), ("target", "primary")),
    )
    assert samples[by_id] == 3
    total = (
        "datasvc_db_query_duration_seconds_sum",
        (("statement", "users.get_by_id"), ("target", "primary")),
    )
    assert 0 < samples[total] < 3
    assert samples[("datasvc_db_pool_acquire_seconds_count", (("target", "primary"),))] >= 4


def test_a_failing_statement_counts_an_error_by_sqlstate(client):
    assert client.post("/api/v1/users", json=USER).status_code == 201
    assert client.post("/api/v1/users", json=USER).status_code == 409
    samples = _scrape(client)
    key = (
        "datasvc_db_query_errors_total",
        (("error", "23505"), ("statement", "users.create"), ("target", "primary")),
    )
    assert samples[key] == 1


def test_pool_gauges_are_read_at_scrape_time(client, settings):
    client.get("/health/ready")
    samples = _scrape(client)
    assert samples[("datasvc_db_pool_max", (("target", "primary"),))] == settings.pool_max_size
    size = samples[("datasvc_db_pool_size", (("target", "primary"),))]
    assert size >= 1
    in_use = samples[("datasvc_db_pool_connections", (("state", "in_use"), ("target", "primary")))]
    idle = samples[("datasvc_db_pool_connections", (("state", "idle"), ("target", "primary")))]
    assert in_use + idle == size
    assert samples[("datasvc_db_pool_waiting", (("target", "primary"),))] == 0


async def test_waiting_counts_requests_blocked_on_a_full_pool(settings):
    settings = settings.with_overrides(pool_min_size=1, pool_max_size=1, acquire_timeout=5.0)
    metrics = Metrics()
    db = await Database.connect(settings, Registry.load(PROJECT_ROOT / "sql"), metrics)
    metrics.register(db.collector)
    try:
        async with db.connection():
            waiter = asyncio.create_task(db.run("users.get_by_id", 1))
            await until(lambda: db.primary.waiting == 1, what="the lookup waits for the connection")
            samples = _samples(metrics.render().decode())
            assert samples[("datasvc_db_pool_waiting", (("target", "primary"),))] == 1
            assert samples[("datasvc_db_pool_connections", (("state", "in_use"), ("target", "primary")))] == 1
        assert await waiter is None
        samples = _samples(metrics.render().decode())
        assert samples[("datasvc_db_pool_waiting", (("target", "primary"),))] == 0
        assert samples[("datasvc_db_pool_acquire_seconds_count", (("target", "primary"),))] == 2
    finally:
        await db.close()


def test_a_closed_pool_is_no_longer_reported():
    metrics = Metrics()
    assert "datasvc_db_pool_size" not in metrics.render().decode()


@pytest.mark.parametrize("path", ["/metrics", "/health"])
def test_metrics_and_health_are_counted_too(client, path):
    client.get(path)
    assert _request_count(_scrape(client), path, "GET", "200") == 1
