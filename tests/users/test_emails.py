"""Emails as callers write them: any stored address can be looked up (issue 11.4)."""

from __future__ import annotations

import httpx2 as httpx
import pytest

from tests.support.servers import ThreadServer
from tests.support.values import HASH


def _create(client, email, username="slashy"):
    body = {"email": email, "username": username, "hashed_password": HASH}
    response = client.post("/api/v1/users", json=body)
    assert response.status_code == 201, response.text
    return response.json()


# (stored email, how a caller writes it in the path)
RESERVED = [
    ("x/y@example.com", "x%2Fy%40example.com"),
    ("x/y@example.com", "X%2FY@EXAMPLE.COM"),
    ("a//b@example.com/", "a%2F%2Fb@example.com%2F"),
    ("q?r#s@example.com", "q%3Fr%23s@example.com"),
    ("%2F@example.com", "%252F@example.com"),
]


@pytest.mark.parametrize(
    ("stored", "path"),
    RESERVED[:4],  # Starlette's TestClient decodes the path twice, so %25 is tested on the real server
    ids=["slash", "slash-other-case", "slashes-and-trailing", "query-and-fragment-chars"],
)
def test_an_email_with_reserved_characters_can_be_looked_up(client, stored, path):
    user = _create(client, stored)
    response = client.get(f"/api/v1/users/by_email/{path}")
    assert response.status_code == 200, response.text
    assert response.json() == user


def test_reserved_characters_through_a_real_server(settings):
    # uvicorn/httptools decode the path themselves: the route must hold for what they hand over.
    with ThreadServer(settings) as server, httpx.Client(base_url=server.base_url) as c:
        for n, stored in enumerate(dict.fromkeys(stored for stored, _ in RESERVED)):
            body = {"email": stored, "username": f"reserved{n}", "hashed_password": HASH}
            assert c.post("/api/v1/users", json=body).status_code == 201
        for stored, path in RESERVED:
            response = c.get(f"/api/v1/users/by_email/{path}")
            assert response.status_code == 200, (path, response.text)
            assert response.json()["email"] == stored
        assert c.get("/api/v1/users/by_email/x%2Fz%40example.com").status_code == 404


def test_the_openapi_path_and_metrics_route_name_the_parameter_plainly(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/users/by_email/{email}" in paths
    assert not any(":path" in p for p in paths)
    client.get("/api/v1/users/by_email/x%2Fy@example.com")
    metrics = client.get("/metrics").text
    assert 'route="/api/v1/users/by_email/{email}"' in metrics
