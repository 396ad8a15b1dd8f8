"""POST /api/v1/users:batchCreate: all or nothing, every conflict named, invalid items by index."""

from starlette.testclient import TestClient

from datasvc.app import create_app
from tests.support.api import USER_FIELDS, assert_problem, new_user, statements_run

URL = "/api/v1/users:batchCreate"


def _user(i: int, **overrides):
    return {**new_user(username=f"user{i}", email=f"user{i}@example.com"), **overrides}


def _total(client, **filters) -> int:
    query = "&".join(f"{k}={v}" for k, v in filters.items())
    return int(client.get(f"/api/v1/users?count=exact&limit=1&{query}").json()["total"])


def test_created_in_request_order_in_one_statement_and_counted(client):
    before = statements_run(client)
    response = client.post(URL, json={"users": [_user(i) for i in (3, 1, 2)]})
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [u["username"] for u in items] == ["user3", "user1", "user2"]
    assert set(items[0]) == USER_FIELDS
    assert response.headers["x-consistency-token"]
    ran = {k: v - before.get(k, 0) for k, v in statements_run(client).items() if v != before.get(k, 0)}
    assert ran == {"users.batch_create": 1}
    assert client.get(f"/api/v1/users/{items[1]['id']}").json() == items[1]
    # The counts triggers (migration 0009) saw the one multi-row INSERT: the totals stay exact.
    assert _total(client) == 3
    assert _total(client, status="active", is_verified="false") == 3


def test_every_conflict_is_named_and_nothing_is_written(client):
    assert (
        client.post("/api/v1/users", json=new_user(username="taken", email="Taken@Example.com")).status_code
        == 201
    )
    users = [
        _user(0),
        _user(1, username="taken"),  # taken by an existing user
        _user(2, email="TAKEN@example.COM"),  # taken, ignoring case
        _user(3, username="user0"),  # repeats item 0's username
        _user(4, email="USER0@EXAMPLE.COM"),  # repeats item 0's email, ignoring case
        _user(5, email="e\u0301mile@example.com"),
        _user(6, email="\u00c9MILE@example.com"),  # the same address as item 5 (NFD/NFC, case)
        _user(7),
    ]
    problem = assert_problem(client.post(URL, json={"users": users}), 409)
    assert problem["type"].endswith(":batch-conflict")
    assert problem["errors"] == [
        {"index": 1, "field": "username", "reason": "taken"},
        {"index": 2, "field": "email", "reason": "taken"},
        {"index": 3, "field": "username", "reason": "repeated in this batch"},
        {"index": 4, "field": "email", "reason": "repeated in this batch"},
        {"index": 6, "field": "email", "reason": "repeated in this batch"},
    ]
    assert _total(client) == 1  # all or nothing


def test_invalid_items_are_422_by_index_and_field(client):
    users = [_user(0), _user(1, email="not-an-address"), _user(2, extra=True), _user(3, username="x")]
    problem = assert_problem(client.post(URL, json={"users": users}), 422)
    assert problem["type"].endswith(":batch-invalid")
    assert [(e["index"], e["field"]) for e in problem["errors"]] == [
        (1, "email"),
        (2, "extra"),
        (3, "username"),
    ]
    assert _total(client) == 0


def test_the_batch_itself_must_hold_1_to_1000_users(settings):
    # 1001 users are ~130 KB: past the default body cap (413), which a caller of big batches raises.
    with TestClient(create_app(settings.with_overrides(max_body_bytes=1_000_000))) as client:
        assert_problem(client.post(URL, json={"users": []}), 422, "body.users")
        problem = assert_problem(client.post(URL, json={"users": [_user(0)] * 1001}), 422, "body.users")
        assert "1000" in problem["detail"]
        assert_problem(client.post(URL, json={"people": []}), 422, "body.people")


def test_minimal_is_201_without_a_body(client):
    response = client.post(URL, json={"users": [_user(0), _user(1)]}, headers={"Prefer": "return=minimal"})
    assert (response.status_code, response.content) == (201, b"")
    assert response.headers["preference-applied"] == "return=minimal"
    assert _total(client) == 2
