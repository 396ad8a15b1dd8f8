"""POST /api/v1/users:batchGet against a real PostgreSQL: order, duplicates, missing keys, folding, limits."""

import asyncio
from datetime import UTC, datetime

import pytest

from tests.support import load
from tests.support.api import USER_FIELDS, assert_problem, new_user, statements_run

URL = "/api/v1/users:batchGet"
JSON = "application/json"


@pytest.fixture
def three(client):
    users = []
    for name, email in (
        ("ann", "Ann@Example.com"),
        ("bob", "bob@example.com"),
        ("emile", "\u00c9mile@example.com"),
    ):
        response = client.post("/api/v1/users", json=new_user(username=name, email=email))
        assert response.status_code == 201, response.text
        users.append(response.json())
    return users


def test_ids_come_back_in_request_order_each_once_with_the_missing_in_order(client, three):
    ann, bob, emile = three
    response = client.post(URL, json={"ids": [emile["id"], 999_999, ann["id"], emile["id"], -5, bob["id"]]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [u["id"] for u in body["items"]] == [emile["id"], ann["id"], bob["id"]]
    assert body["missing"] == [999_999, -5]
    assert set(body["items"][0]) == USER_FIELDS
    assert body["items"][1] == ann


def test_usernames_match_exactly(client, three):
    response = client.post(URL, json={"usernames": ["bob", "ANN", "ann", "nobody", "bob"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [u["username"] for u in body["items"]] == ["bob", "ann"]
    assert body["missing"] == ["ANN", "nobody"]


def test_emails_match_ignoring_case_and_unicode_form_as_by_email(client, three):
    ann, _bob, emile = three
    decomposed_upper = "E\u0301MILE@EXAMPLE.COM"  # NFD, upper case: the same address as Émile's
    response = client.post(
        URL, json={"emails": [decomposed_upper, "nobody@example.com", "ann@EXAMPLE.com", "ANN@example.COM"]}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [u["id"] for u in body["items"]] == [emile["id"], ann["id"]]  # Ann asked twice, answered once
    assert body["missing"] == ["nobody@example.com"]
    single = client.get("/api/v1/users/by_email/" + decomposed_upper)
    assert single.json()["id"] == emile["id"]


def test_nothing_found_is_200_with_every_key_missing(client):
    response = client.post(URL, json={"ids": [1, 2]})
    assert response.status_code == 200
    assert response.json() == {"items": [], "missing": [1, 2]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body"),
        ({"ids": [1], "usernames": ["ann"]}, "body"),
        ({"ids": []}, "body.ids"),
        ({"ids": list(range(1001))}, "body.ids"),
        ({"ids": ["1"]}, "body.ids.0"),
        ({"ids": [2**63]}, "body.ids.0"),
        ({"emails": ["a@b.c", 5]}, "body.emails.1"),
        ({"usernames": ["x" * 51]}, "body.usernames.0"),
        ({"ids": [1], "extra": 1}, "body.extra"),
    ],
    ids=[
        "none",
        "two-kinds",
        "empty",
        "over-limit",
        "string-id",
        "id-too-big",
        "number-email",
        "long",
        "extra",
    ],
)
def test_bad_batches_are_422_naming_the_field(client, body, field):
    problem = assert_problem(client.post(URL, json=body), 422, field)
    if body.get("ids") and len(body["ids"]) > 1000:
        assert "1000" in problem["detail"]


@pytest.mark.parametrize(
    ("kind", "statement"),
    [
        ("ids", "users.batch_get_by_id"),
        ("usernames", "users.batch_get_by_username"),
        ("emails", "users.batch_get_by_email"),
    ],
)
def test_one_statement_per_call_whatever_the_number_of_keys(client, three, kind, statement):
    field = {"ids": "id", "usernames": "username", "emails": "email"}[kind]
    before = statements_run(client)
    response = client.post(
        URL, json={kind: [u[field] for u in three] + [f"x{i}" if kind != "ids" else -i for i in range(997)]}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 3
    after = statements_run(client)
    ran = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    assert ran == {statement: 1}


def test_an_id_written_as_a_whole_float_is_taken(client, three):
    ann = three[0]
    response = client.post(URL, content=f'{{"ids": [{ann["id"]}.0, 1e1]}}', headers={"Content-Type": JSON})
    assert response.status_code == 200, response.text
    assert [u["id"] for u in response.json()["items"]] == [ann["id"]]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("9007199254740993.0", "2**53"),  # parses as ...992.0: another user's id, were it taken
        ("-9007199254740993.0", "2**53"),
        ("9.3e18", "2**53"),
        ("2.5", "whole number"),
    ],
)
def test_an_id_a_float_cannot_hold_exactly_is_422_naming_it_not_rounded(client, raw, reason):
    response = client.post(URL, content=f'{{"ids": [1, {raw}]}}', headers={"Content-Type": JSON})
    problem = assert_problem(response, 422, "body.ids.1")
    assert reason in problem["errors"][0]["reason"]


def test_the_openapi_ids_are_bigints(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["BatchGet"]
    assert schema["properties"]["ids"]["items"] == {
        "type": "integer",
        "minimum": -(2**63),
        "maximum": 2**63 - 1,
    }


@pytest.mark.parametrize(
    "created_at",
    [
        datetime(2024, 1, 1, tzinfo=UTC),  # no fraction at all
        datetime(2024, 1, 1, 0, 0, 0, 100000, tzinfo=UTC),  # .1: trailing zeros, which to_json drops
        datetime(33, 12, 31, 23, 59, 59, 1, tzinfo=UTC),  # a year of two digits, one microsecond
    ],
    ids=["whole-second", "trailing-zeros", "small-year"],
)
def test_timestamps_are_the_text_a_single_get_gives(client, database_url, created_at):
    """The statement writes the timestamps itself; they must be GET's text to the byte."""
    user = client.post("/api/v1/users", json=new_user(username="timed", email="timed@example.com")).json()

    async def set_created_at() -> None:
        async with load.admin(database_url) as admin:
            await admin.run("batches.set_created_at", user["id"], created_at)

    asyncio.run(set_created_at())
    single = client.get(f"/api/v1/users/{user['id']}").json()
    for body in ({"ids": [user["id"]]}, {"usernames": ["timed"]}, {"emails": ["TIMED@example.com"]}):
        (item,) = client.post(URL, json=body).json()["items"]
        assert item == single
