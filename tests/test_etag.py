"""ETag on user responses, If-Match on PATCH/DELETE (412 on mismatch), If-None-Match on GET (304)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from datasvc.conditional import etag
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT
from datasvc.statements import execute
from tests.support import load
from tests.support.values import HASH
from tests.support.waits import until


@pytest.fixture
def user(client):
    body = {"email": "alice@example.org", "username": "alice", "hashed_password": HASH}
    created = client.post("/api/v1/users", json=body)
    assert created.status_code == 201, created.text
    return created


def url(user) -> str:
    return f"/api/v1/users/{user.json()['id']}"


def test_create_and_every_read_carry_the_same_etag(client, user):
    tag = user.headers["etag"]
    assert tag.startswith('"')
    assert tag.endswith('"')
    for path in (url(user), "/api/v1/users/by_username/alice", "/api/v1/users/by_email/ALICE@example.org"):
        assert client.get(path).headers["etag"] == tag


@pytest.mark.pooler
def test_patch_with_the_current_etag_applies_and_moves_the_etag(client, user):
    old = user.headers["etag"]
    response = client.patch(url(user), json={"bio": "hello"}, headers={"If-Match": old})
    assert response.status_code == 200, response.text
    assert response.json()["bio"] == "hello"
    new = response.headers["etag"]
    assert new != old
    assert client.get(url(user)).headers["etag"] == new


@pytest.mark.pooler
def test_patch_with_a_stale_etag_is_412_and_changes_nothing(client, user):
    stale = user.headers["etag"]
    assert client.patch(url(user), json={"bio": "first"}).status_code == 200
    response = client.patch(url(user), json={"bio": "second"}, headers={"If-Match": stale})
    assert response.status_code == 412
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:datasvc:problem:precondition-failed"
    assert client.get(url(user)).json()["bio"] == "first"


def test_an_empty_patch_checks_the_etag_too(client, user):
    stale = user.headers["etag"]
    client.patch(url(user), json={"bio": "first"})
    assert client.patch(url(user), json={}, headers={"If-Match": stale}).status_code == 412
    current = client.get(url(user)).headers["etag"]
    assert client.patch(url(user), json={}, headers={"If-Match": current}).status_code == 200


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ("{current}", 200),
        ('"0", {current}', 200),
        ("*", 200),
        ("W/{current}", 412),  # If-Match compares strongly: a weak tag never matches
        ('"0"', 412),
        ("not a tag", 412),
        ('"ffffffffffffffffffffffff"', 412),
        ('"zz"', 412),
        ("", 412),
    ],
    ids=["current", "list", "star", "weak", "other", "garbage", "overflow", "not-hex", "empty"],
)
def test_if_match_forms(client, user, header, status):
    value = header.format(current=user.headers["etag"])
    response = client.patch(url(user), json={"bio": "x"}, headers={"If-Match": value})
    assert response.status_code == status, response.text


def test_if_match_on_a_missing_user_is_404(client):
    response = client.patch("/api/v1/users/999999", json={"bio": "x"}, headers={"If-Match": '"0"'})
    assert response.status_code == 404
    assert client.delete("/api/v1/users/999999", headers={"If-Match": '"0"'}).status_code == 404


def test_delete_with_a_stale_etag_is_412_and_keeps_the_user(client, user):
    stale = user.headers["etag"]
    current = client.patch(url(user), json={"bio": "x"}).headers["etag"]
    assert client.delete(url(user), headers={"If-Match": stale}).status_code == 412
    assert client.get(url(user)).status_code == 200
    assert client.delete(url(user), headers={"If-Match": current}).status_code == 204
    assert client.get(url(user)).status_code == 404


@pytest.mark.pooler
def test_if_none_match_current_is_304_without_a_body(client, user):
    tag = user.headers["etag"]
    for value in (tag, f"W/{tag}", f'"0", {tag}', "*"):
        response = client.get(url(user), headers={"If-None-Match": value})
        assert response.status_code == 304, value
        assert response.content == b""
        assert response.headers["etag"] == tag
    assert client.get(url(user), headers={"If-None-Match": '"0"'}).status_code == 200


def test_the_etag_is_the_row_version_bumped_by_every_write(client, user):
    assert user.headers["etag"] == etag(1) == '"1"'
    assert "version" not in user.json()  # the contract's user shape is unchanged: the version is the tag
    assert client.patch(url(user), json={"bio": "a"}).headers["etag"] == '"2"'
    assert client.patch(url(user), json={"bio": "a"}).headers["etag"] == '"3"'  # same value: still a write
    assert client.patch(url(user), json={}).headers["etag"] == '"3"'  # nothing to change: no write


async def test_writers_queued_on_the_row_lock_get_distinct_increasing_versions(database_url):
    """The writer that started first but waited for the lock writes last: its version is still higher.

    With the old updated_at tag the late writer stored its *transaction start*, older than the version
    already committed before it: the tag went backwards. The version is bumped under the row lock.
    """
    registry = Registry.load(PROJECT_ROOT / "sql")
    early, late = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        async with load.admin(database_url) as admin:
            row = await execute(
                early, registry["users.create"], ("q@example.org", "queued", HASH, None, None)
            )
            early_tx, late_tx = early.transaction(), late.transaction()
            await early_tx.start()  # now() is fixed here: early's updated_at will be this instant
            await late_tx.start()
            first = await execute(late, registry["users.update"], (row["id"], '{"bio": "late"}', None))
            second = asyncio.create_task(
                execute(early, registry["users.update"], (row["id"], '{"bio": "early"}', None))
            )
            # early queues on late's lock
            await until(lambda: _waiting(admin), what="the early update waiting on the late one's lock")
            await late_tx.commit()
            second_row = await second
            await early_tx.commit()
    finally:
        await early.close()
        await late.close()
    assert (first["version"], second_row["version"]) == (2, 3)
    # What the old tag would have done: the later write carries the earlier instant.
    assert second_row["updated_at"] < first["updated_at"]


async def _waiting(admin: load.Admin) -> bool:
    return bool(await admin.run("faults.waiting", load.ADMIN_NAME) > 0)
