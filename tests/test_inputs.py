"""Inputs are exactly what the contract says, and a refusal names the field in words meant for people."""

from __future__ import annotations

import pytest

HASH = "$2b$12$" + "a" * 53


def _errors(response):
    assert response.status_code == 422, response.text
    return {e["field"]: e["reason"] for e in response.json()["errors"]}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=5_0", "query.limit"),
        ("limit=%2B5", "query.limit"),
        ("limit=5.0", "query.limit"),
        ("limit=%205", "query.limit"),
        ("limit=0x10", "query.limit"),
        ("offset=1_000", "query.offset"),
        ("is_verified=yes", "query.is_verified"),
        ("is_verified=1", "query.is_verified"),
        ("is_verified=on", "query.is_verified"),
        ("is_admin=True", "query.is_admin"),
        ("is_admin=f", "query.is_admin"),
    ],
)
def test_only_plain_digits_and_true_false_are_read(client, query, field):
    errors = _errors(client.get(f"/api/v1/users?{query}"))
    assert list(errors) == [field]


@pytest.mark.parametrize("query", ["limit=50", "offset=0", "is_verified=true", "is_admin=false"])
def test_the_contracts_own_forms_are_accepted(client, query):
    assert client.get(f"/api/v1/users?{query}").status_code == 200


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("search=", "must not be empty"),
        ("limit=5_0", "must be an integer in plain decimal digits"),
        ("limit=0", "must be at least 1"),
        ("offset=-1", "must be at least 0"),
        ("is_verified=yes", "must be true or false"),
    ],
)
def test_query_reasons_are_written_for_people(client, query, reason):
    assert _errors(client.get(f"/api/v1/users?{query}")) == {f"query.{query.split('=')[0]}": reason}


def test_body_reasons_say_what_the_field_must_be_without_its_pattern(client):
    body = {"email": "not-an-address", "username": "a b", "hashed_password": "short"}
    errors = _errors(client.post("/api/v1/users", json=body))
    assert errors["body.hashed_password"].startswith("must be a password hash")
    assert "60" in errors["body.hashed_password"]
    assert errors["body.email"].startswith("must be an email address")
    assert errors["body.username"].startswith("must be 3 to 50 characters")
    for reason in errors.values():
        assert "\\x" not in reason
        assert "^" not in reason
        assert len(reason) < 120


def test_patch_reasons_are_the_same_words(client):
    created = client.post(
        "/api/v1/users", json={"email": "a@b.io", "username": "alice", "hashed_password": HASH}
    )
    errors = _errors(client.patch(created.headers["location"], json={"email": "nope", "is_admin": "yes"}))
    assert errors["body.email"].startswith("must be an email address")
    assert errors["body.is_admin"] == "must be true or false"


def test_a_body_of_thousands_of_unknown_keys_lists_only_the_first_errors(client):
    """6,000 unknown keys in 64 kB: the 422 names the first MAX_LISTED and how many there were in all."""
    body: dict[str, object] = {"email": "a@b.io", "username": "alice", "hashed_password": HASH}
    body.update({f"k{i}": 0 for i in range(6000)})
    response = client.post("/api/v1/users", json=body)
    assert response.status_code == 422
    problem = response.json()
    assert len(problem["errors"]) == 20
    assert problem["errors_total"] == 6000
    assert problem["detail"].endswith("; and 5980 more")
    assert len(response.content) < 4096  # not 7x the request: the answer's size is bounded
