"""What the HTTP tests of the users API share: a user to create, a user's fields, the problem check."""

from __future__ import annotations

from typing import Any

import httpx2
from prometheus_client.parser import text_string_to_metric_families

from tests.support.values import HASH

PROBLEM = "application/problem+json"
USER_FIELDS = {
    "id",
    "email",
    "username",
    "full_name",
    "bio",
    "status",
    "is_verified",
    "is_admin",
    "created_at",
    "updated_at",
}


def new_user(**overrides: Any) -> dict[str, Any]:
    """The body of a create: alice unless ``overrides`` say otherwise."""
    body: dict[str, Any] = {"email": "alice@example.com", "username": "alice", "hashed_password": HASH}
    body.update(overrides)
    return body


def assert_problem(response: httpx2.Response, status: int, field: str | None = None) -> Any:
    """``response`` is an RFC 9457 problem of ``status`` (naming ``field`` if given); its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:datasvc:problem:")
    assert body["title"]
    assert body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])] + [body.get("field")]
        assert any(f and f.endswith(field) for f in fields), body
    return body


def statements_run(client: Any) -> dict[str, float]:
    """How many times each users statement ran, from /metrics (for one-statement-per-request checks)."""
    text = client.get("/metrics").text
    return {
        s.labels["statement"]: s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        # The requests' statements only: start-up checks and purges may run meanwhile.
        if s.name == "datasvc_db_query_duration_seconds_count"
        and s.labels["statement"].startswith("users.")
        and not s.labels["statement"].endswith("_purge")
    }
