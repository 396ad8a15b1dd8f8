"""Every non-2xx leaves as problem+json, whatever went wrong and wherever."""

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.testclient import TestClient

from datasvc.middleware import RequestContextMiddleware
from tests.support.values import HASH

PROBLEM = "application/problem+json"


def test_malformed_json_is_400(client):
    response = client.post(
        "/api/v1/users", content=b'{"email": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "urn:datasvc:problem:bad-request"


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b"null", b"42"])
def test_json_that_is_not_an_object_is_422(client, body):
    response = client.post("/api/v1/users", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "body", "reason": "must be a JSON object"}]


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
def test_other_media_types_are_415(client, content_type):
    response = client.post("/api/v1/users", content=b"{}", headers={"content-type": content_type})
    assert response.status_code == 415
    assert response.headers["content-type"] == PROBLEM


def test_json_media_type_with_charset_is_accepted(client):
    body = b'{"email": "a@b.io", "username": "alice", "hashed_password": "' + HASH.encode() + b'"}'
    response = client.post(
        "/api/v1/users", content=body, headers={"content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 201


def test_oversized_body_is_413_before_it_is_read(client):
    response = client.post(
        "/api/v1/users", content=b"x" * 70_000, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM


def test_oversized_chunked_body_is_413(client):
    def chunks():
        for _ in range(20):
            yield b"x" * 8192

    response = client.post("/api/v1/users", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


def test_unknown_route_is_404_problem(client):
    response = client.get("/api/v2/nothing")
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["instance"] == "/api/v2/nothing"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/api/v1/users/1", "DELETE, GET, HEAD, PATCH"),
        ("DELETE", "/api/v1/auth/lookup", "POST"),
        ("POST", "/health", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405_with_allow(client, method, path, allow):
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.headers["content-type"] == PROBLEM


def test_incoming_request_id_is_echoed_everywhere(client):
    response = client.get("/api/v1/users/0", headers={"x-request-id": "caller-123"})
    assert response.headers["x-request-id"] == "caller-123"
    assert response.json()["request_id"] == "caller-123"


@pytest.mark.parametrize("bad", ["has space", "x" * 200, "semi;colon"])
def test_unsafe_request_id_is_replaced(client, bad):
    response = client.get("/health", headers={"x-request-id": bad})
    assert response.headers["x-request-id"] != bad
    assert len(response.headers["x-request-id"]) == 32


def test_server_timing_reports_database_time(client):
    response = client.get("/api/v1/users/1")
    name, _, duration = response.headers["server-timing"].partition(";dur=")
    assert name == "db"
    assert float(duration) > 0


def test_head_is_served_where_get_is(client):
    assert client.head("/health").status_code == 200


def test_unexpected_error_is_a_bare_500_problem(caplog):
    async def explode(request):
        raise RuntimeError("SELECT hashed_password FROM users -- at /srv/app.py line 3")

    app = Starlette(
        routes=[Route("/boom", explode)],
        middleware=[Middleware(RequestContextMiddleware, max_body_bytes=1024)],
    )
    with TestClient(app) as test_client:
        response = test_client.get("/boom")
    assert response.status_code == 500
    assert response.headers["content-type"] == PROBLEM
    text = response.text
    for leak in ("SELECT", "hashed_password", "Traceback", "RuntimeError", "app.py", "asyncpg"):
        assert leak not in text
    assert response.json()["detail"] == "Internal server error"
    assert any(r.name == "datasvc.error" for r in caplog.records)


def test_schema_missing_is_503_not_500(client, database_url):
    import psycopg

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ALTER TABLE users RENAME TO users_gone")
    response = client.get("/api/v1/users/1")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["type"] == "urn:datasvc:problem:schema-missing"
    assert "users_gone" not in response.text
    assert "relation" not in response.text


@pytest.mark.parametrize("path", ["/api/v1/users/3/", "/health/", "/api/v1/auth/lookup/"])
def test_a_trailing_slash_is_a_404_problem_never_a_redirect(client, path):
    response = client.get(path, headers={"host": "evil.example.com"}, follow_redirects=False)
    assert response.status_code == 404
    assert "location" not in response.headers
    assert response.headers["content-type"] == PROBLEM
    assert "evil.example.com" not in response.text


def test_the_documented_slash_aliases_are_served_directly(client):
    created = client.post(
        "/api/v1/users/",
        json={"email": "a@b.io", "username": "alice", "hashed_password": HASH},
        follow_redirects=False,
    )
    assert created.status_code == 201
    listed = client.get("/api/v1/users/", follow_redirects=False)
    assert listed.status_code == 200
    assert [u["username"] for u in listed.json()["items"]] == ["alice"]


def test_an_undeclared_method_on_a_fixed_path_a_lookup_would_take_is_405(client):
    """`PATCH /api/v1/users/changes` is not user "changes": 405 naming what the path allows."""
    for path in ("/api/v1/users/changes", "/api/v1/users/export"):
        response = client.patch(path, json={})
        assert response.status_code == 405, path
        assert response.headers["allow"] == "GET, HEAD"
        assert response.headers["content-type"].startswith("application/problem+json")
