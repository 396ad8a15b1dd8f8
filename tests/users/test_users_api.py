"""The users HTTP contract of issue 2, against a real PostgreSQL."""

import pytest

from tests.support.api import USER_FIELDS, assert_problem, new_user
from tests.support.values import HASH, OTHER_HASH


@pytest.fixture
def alice(client):
    response = client.post("/api/v1/users", json=new_user(full_name="Alice A", bio="hi"))
    assert response.status_code == 201, response.text
    return response.json()


# --- create -----------------------------------------------------------------------------------------


@pytest.mark.pooler
def test_create_returns_201_the_user_and_location(client):
    response = client.post("/api/v1/users", json=new_user(full_name="Alice"))
    assert response.status_code == 201
    body = response.json()
    assert set(body) == USER_FIELDS
    assert response.headers["location"] == f"/api/v1/users/{body['id']}"
    assert body["status"] == "active"
    assert body["is_admin"] is False
    assert body["is_verified"] is False
    assert body["created_at"].endswith("+00:00")
    assert "T" in body["created_at"]


def test_create_accepts_the_trailing_slash_form(client):
    assert client.post("/api/v1/users/", json=new_user()).status_code == 201


@pytest.mark.parametrize("field", ["is_admin", "status", "id", "created_at", "is_verified", "nickname"])
def test_create_refuses_unknown_or_server_owned_fields(client, field):
    value = {"is_admin": True, "status": "suspended", "id": 7, "is_verified": True}.get(field, "x")
    body = assert_problem(client.post("/api/v1/users", json=new_user(**{field: value})), 422, field)
    assert any(e["reason"] == "unknown field" for e in body["errors"])
    assert client.get("/api/v1/users/by_username/alice").status_code == 404


BAD_CREATE = {
    "email-missing-at": ({"email": "alice.example.com"}, "email"),
    "email-too-long": ({"email": "a" * 250 + "@x.io"}, "email"),
    "username-short": ({"username": "ab"}, "username"),
    "username-long": ({"username": "a" * 51}, "username"),
    "username-charset": ({"username": "al ice"}, "username"),
    "username-dot": ({"username": "al.ice"}, "username"),
    "hash-short": ({"hashed_password": "x" * 59}, "hashed_password"),
    "hash-long": ({"hashed_password": "x" * 256}, "hashed_password"),
    "full-name-long": ({"full_name": "x" * 101}, "full_name"),
    "bio-long": ({"bio": "x" * 1001}, "bio"),
    "nul-in-full-name": ({"full_name": "a\x00b"}, "full_name"),
    "nul-in-username": ({"username": "ali\x00ce"}, "username"),
    "wrong-type": ({"username": 12345}, "username"),
    "null-email": ({"email": None}, "email"),
}


@pytest.mark.parametrize(("patch", "field"), BAD_CREATE.values(), ids=BAD_CREATE.keys())
def test_create_rejects_bad_values_naming_the_field(client, patch, field):
    assert_problem(client.post("/api/v1/users", json=new_user(**patch)), 422, field)


def test_create_requires_fields(client):
    body = assert_problem(client.post("/api/v1/users", json={}), 422)
    assert {e["field"] for e in body["errors"]} == {"body.email", "body.username", "body.hashed_password"}


@pytest.mark.pooler
def test_duplicate_username_is_409_naming_username(client, alice):
    response = client.post("/api/v1/users", json=new_user(email="other@example.com"))
    assert assert_problem(response, 409)["field"] == "username"


def test_email_differing_only_in_case_is_409_naming_email(client, alice):
    response = client.post("/api/v1/users", json=new_user(username="alice2", email="ALICE@Example.COM"))
    assert assert_problem(response, 409)["field"] == "email"


def test_create_never_returns_the_password_hash(client):
    response = client.post("/api/v1/users", json=new_user())
    assert HASH not in response.text
    assert "hashed_password" not in response.json()


# --- read -------------------------------------------------------------------------------------------


@pytest.mark.pooler
def test_get_by_id(client, alice):
    response = client.get(f"/api/v1/users/{alice['id']}")
    assert response.status_code == 200
    assert response.json() == alice


def test_get_by_username(client, alice):
    assert client.get("/api/v1/users/by_username/alice").json() == alice


@pytest.mark.pooler
def test_get_by_email_ignores_case(client, alice):
    assert client.get("/api/v1/users/by_email/ALICE@example.com").json() == alice


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/users/999999",
        "/api/v1/users/-1",
        "/api/v1/users/by_username/bob",
        "/api/v1/users/by_email/b@x.io",
    ],
)
def test_missing_user_is_404_problem(client, path):
    assert_problem(client.get(path), 404)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/users/abc",
        "/api/v1/users/1.5",
        "/api/v1/users/9223372036854775808",
        "/api/v1/users/-9223372036854775809",
        "/api/v1/users/99999999999999999999999999",
        "/api/v1/users/%C2%B2",
        "/api/v1/users/by_username/al%00ice",
        "/api/v1/users/by_email/a%00@x.io",
    ],
    ids=[
        "text",
        "float",
        "int64-plus-one",
        "int64-minus-one",
        "huge",
        "superscript-digit",
        "nul-user",
        "nul-email",
    ],
)
def test_impossible_path_values_are_422_never_500(client, path):
    assert_problem(client.get(path), 422)


def test_int64_max_is_a_valid_id(client):
    assert_problem(client.get("/api/v1/users/9223372036854775807"), 404)


# --- update -----------------------------------------------------------------------------------------


@pytest.mark.pooler
def test_patch_changes_only_the_given_fields(client, alice):
    response = client.patch(
        f"/api/v1/users/{alice['id']}",
        json={"status": "suspended", "is_verified": True, "is_admin": True, "email": "new@example.com"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["is_verified"], body["is_admin"], body["email"]) == (
        "suspended",
        True,
        True,
        "new@example.com",
    )
    assert body["full_name"] == "Alice A"
    assert body["bio"] == "hi"
    assert body["updated_at"] > alice["updated_at"]
    assert client.get(f"/api/v1/users/{alice['id']}").json() == body


def test_patch_null_clears_nullable_fields(client, alice):
    body = client.patch(f"/api/v1/users/{alice['id']}", json={"full_name": None, "bio": None}).json()
    assert body["full_name"] is None
    assert body["bio"] is None


def test_empty_patch_returns_the_user_unchanged(client, alice):
    assert client.patch(f"/api/v1/users/{alice['id']}", json={}).json() == alice


BAD_PATCH = {
    "null-email": ({"email": None}, "email"),
    "null-status": ({"status": None}, "status"),
    "null-is-admin": ({"is_admin": None}, "is_admin"),
    "bad-status": ({"status": "deleted"}, "status"),
    "string-bool": ({"is_verified": "true"}, "is_verified"),
    "username": ({"username": "bob"}, "username"),
    "hash": ({"hashed_password": OTHER_HASH}, "hashed_password"),
    "id": ({"id": 5}, "id"),
    "created-at": ({"created_at": "2020-01-01T00:00:00Z"}, "created_at"),
    "updated-at": ({"updated_at": "2020-01-01T00:00:00Z"}, "updated_at"),
    "long-bio": ({"bio": "x" * 1001}, "bio"),
    "nul-bio": ({"bio": "\x00"}, "bio"),
}


@pytest.mark.parametrize(("patch", "field"), BAD_PATCH.values(), ids=BAD_PATCH.keys())
def test_bad_patch_is_422_and_changes_nothing(client, alice, patch, field):
    response = client.patch(f"/api/v1/users/{alice['id']}", json={"full_name": "Changed", **patch})
    assert_problem(response, 422, field)
    assert client.get(f"/api/v1/users/{alice['id']}").json() == alice


def test_patch_email_conflict_is_409(client, alice):
    bob = client.post("/api/v1/users", json=new_user(username="bob", email="bob@example.com")).json()
    response = client.patch(f"/api/v1/users/{bob['id']}", json={"email": "Alice@Example.com"})
    assert assert_problem(response, 409)["field"] == "email"


def test_patch_missing_user_is_404(client):
    assert_problem(client.patch("/api/v1/users/424242", json={"bio": "x"}), 404)


# --- delete -----------------------------------------------------------------------------------------


@pytest.mark.pooler
def test_delete_is_204_then_404(client, alice):
    response = client.delete(f"/api/v1/users/{alice['id']}")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(client.get(f"/api/v1/users/{alice['id']}"), 404)
    assert_problem(client.delete(f"/api/v1/users/{alice['id']}"), 404)


# --- auth lookup ------------------------------------------------------------------------------------


@pytest.mark.parametrize("login", ["alice", "alice@example.com", "ALICE@EXAMPLE.COM"])
def test_auth_lookup_by_username_or_email(client, alice, login):
    response = client.post("/api/v1/auth/lookup", json={"login": login})
    assert response.status_code == 200
    assert response.json() == {
        "id": alice["id"],
        "username": "alice",
        "email": "alice@example.com",
        "hashed_password": HASH,
        "status": "active",
        "is_verified": False,
    }


def test_auth_lookup_is_case_sensitive_for_usernames(client, alice):
    assert_problem(client.post("/api/v1/auth/lookup", json={"login": "ALICE"}), 404)


def test_auth_lookup_unknown_login_is_404(client):
    assert_problem(client.post("/api/v1/auth/lookup", json={"login": "nobody"}), 404)


@pytest.mark.parametrize("body", [{}, {"login": ""}, {"login": 5}, {"login": "a", "password": "x"}])
def test_auth_lookup_validates(client, body):
    assert_problem(client.post("/api/v1/auth/lookup", json=body), 422)
