"""Idempotency-Key on create, PATCH, DELETE and batchCreate, against a real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from datasvc import idempotency
from datasvc.db import Database
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT, Settings
from tests.support import load
from tests.support.api import assert_problem, new_user
from tests.support.faultproxy import FaultProxy
from tests.support.servers import ThreadServer
from tests.support.waits import until

KEY = {"Idempotency-Key": '"8e03978e-40d5-43e8-bc93-6894a57f9324"'}


def test_a_retried_create_replays_the_first_answer_byte_for_byte(client):
    first = client.post("/api/v1/users", json=new_user(), headers=KEY)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = client.post("/api/v1/users", json=new_user(), headers=KEY)
    assert again.status_code == 201, again.text
    assert again.content == first.content
    for name in ("location", "etag", "content-type", "x-consistency-token"):
        assert again.headers[name] == first.headers[name], name
    assert again.headers["idempotent-replayed"] == "true"
    users = client.post("/api/v1/users:batchGet", json={"usernames": ["alice"]}).json()["items"]
    assert len(users) == 1
    # The keyed answer is the same as the unkeyed path renders for the same row.
    assert client.get(first.headers["location"]).json() == first.json()


def test_the_body_compares_as_json_not_as_bytes(client):
    first = client.post("/api/v1/users", json=new_user(), headers=KEY)
    reordered = b'{"hashed_password": "%s", "username": "alice",  "email": "alice@example.com"}' % (
        new_user()["hashed_password"].encode()
    )
    again = client.post(
        "/api/v1/users", content=reordered, headers={**KEY, "content-type": "application/json"}
    )
    assert (again.status_code, again.content) == (201, first.content)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/api/v1/users", new_user(username="other", email="other@example.com")),
        ("PATCH", "/api/v1/users/1", {"bio": "x"}),
        ("POST", "/api/v1/users:batchCreate", {"users": [new_user()]}),
    ],
    ids=["other-body", "other-path-and-method", "other-operation"],
)
def test_the_same_key_with_another_request_is_422_reused(client, method, path, body):
    assert client.post("/api/v1/users", json=new_user(), headers=KEY).status_code == 201
    response = client.request(method, path, json=body, headers=KEY)
    problem = assert_problem(response, 422)
    assert problem["type"].endswith(":idempotency-key-reused")


@pytest.mark.parametrize(
    "key",
    ["", '""', "a b", "\u00e9t\u00e9", "x" * 256, '"unterminated'],
    ids=["empty", "empty-string", "space", "non-ascii", "long", "quote"],
)
def test_a_malformed_key_is_422_naming_the_header(client, key):
    response = client.post("/api/v1/users", json=new_user(), headers={"Idempotency-Key": key.encode()})
    assert_problem(response, 422, "header.Idempotency-Key")
    assert client.get("/api/v1/users/by_username/alice").status_code == 404


def test_a_bare_token_key_works_and_keys_are_per_key(client):
    assert client.post("/api/v1/users", json=new_user(), headers={"Idempotency-Key": "k1"}).status_code == 201
    # Another key for the same body is another request: the username is taken.
    assert_problem(client.post("/api/v1/users", json=new_user(), headers={"Idempotency-Key": "k2"}), 409)


def test_a_failure_is_not_recorded(client):
    assert client.post("/api/v1/users", json=new_user()).status_code == 201
    clash = client.post("/api/v1/users", json=new_user(email="b@example.com"), headers=KEY)
    assert_problem(clash, 409)
    client.delete("/api/v1/users/1")
    # The retry is not answered 409 from a record: the first changed nothing, so this one runs.
    retry = client.post("/api/v1/users", json=new_user(email="b@example.com"), headers=KEY)
    assert retry.status_code == 201


def test_a_retried_patch_applies_once_and_replays(client):
    user = client.post("/api/v1/users", json=new_user()).json()
    url = f"/api/v1/users/{user['id']}"
    first = client.patch(url, json={"bio": "once"}, headers={**KEY, "If-Match": '"1"'})
    assert first.status_code == 200, first.text
    again = client.patch(url, json={"bio": "once"}, headers={**KEY, "If-Match": '"1"'})
    assert (again.status_code, again.content, again.headers["etag"]) == (200, first.content, '"2"')
    assert again.headers["idempotent-replayed"] == "true"
    assert client.get(url).headers["etag"] == '"2"'  # applied once
    minimal = client.patch(
        url, json={"bio": "once"}, headers={**KEY, "If-Match": '"1"', "Prefer": "return=minimal"}
    )
    assert (minimal.status_code, minimal.headers["etag"]) == (204, '"2"')


def test_a_retried_delete_replays_204_not_404(client):
    user = client.post("/api/v1/users", json=new_user()).json()
    url = f"/api/v1/users/{user['id']}"
    assert client.delete(url, headers=KEY).status_code == 204
    again = client.delete(url, headers=KEY)
    assert again.status_code == 204
    assert again.headers["idempotent-replayed"] == "true"
    assert client.delete(url).status_code == 404


def test_a_retried_batch_create_replays_and_writes_once(client):
    body = {"users": [new_user(username=f"user{i}", email=f"user{i}@example.com") for i in range(5)]}
    first = client.post("/api/v1/users:batchCreate", json=body, headers=KEY)
    assert first.status_code == 201, first.text
    again = client.post("/api/v1/users:batchCreate", json=body, headers=KEY)
    assert (again.status_code, again.content) == (201, first.content)
    assert client.get("/api/v1/users?count=exact").json()["total"] == 5


async def test_twenty_concurrent_requests_with_one_key_write_once(settings: Settings):
    with ThreadServer(settings) as server:
        async with load.client(server.base_url) as c:
            answers = await asyncio.gather(
                *(c.post("/api/v1/users", json=new_user(), headers=KEY) for _ in range(20))
            )
            listed = (await c.get("/api/v1/users?count=exact")).json()
    assert [a.status_code for a in answers] == [201] * 20
    assert len({a.content for a in answers}) == 1
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 19
    assert listed["total"] == 1


async def test_a_create_whose_answer_was_lost_after_commit_is_replayed_on_retry(
    settings: Settings, database_url
):
    """The fault proxy holds PostgreSQL's answer to a committed INSERT, then resets the connection."""
    with FaultProxy() as proxy:
        # One connection, on which the keyed INSERT is prepared before the fault: otherwise its Parse is
        # what waits on the lock, and the stall would hold the Bind that commits it.
        proxied = settings.with_overrides(
            database_url=proxy.url_for(database_url), lock_timeout=30.0, pool_min_size=1, pool_max_size=1
        )
        async with load.admin(database_url) as admin, load.admin(database_url) as locker:
            with ThreadServer(proxied) as server:
                async with load.client(server.base_url) as c:
                    warm = new_user(username="warm", email="warm@example.com")
                    assert (
                        await c.post("/api/v1/users", json=warm, headers={"Idempotency-Key": "w"})
                    ).status_code == 201
                    lock = locker.conn.transaction()
                    await lock.start()
                    await locker.run("faults.lock_users_for_writes")
                    first = asyncio.ensure_future(c.post("/api/v1/users", json=new_user(), headers=KEY))
                    await until(lambda: _waiting(admin), what="the INSERT waits on the table lock")
                    proxy.set_mode("stall")  # from here, PostgreSQL's answers stay in the proxy
                    await lock.commit()  # the INSERT goes on and commits; its answer is held
                    await until(lambda: _committed(admin), what="the INSERT committed")
                    proxy.set_mode("reset")  # the connection dies before the service hears the commit
                    lost = await first
                    proxy.set_mode("pass")
                    retry = await c.post("/api/v1/users", json=new_user(), headers=KEY)
                    rows = await admin.run("faults.usernames")
    assert lost.status_code == 503, lost.text  # the service cannot tell whether the write happened
    assert retry.status_code == 201, retry.text
    assert retry.headers["idempotent-replayed"] == "true"
    assert sorted(r["username"] for r in rows) == ["alice", "warm"]  # exactly one row of alice
    assert retry.json()["username"] == "alice"


async def _waiting(admin: load.Admin) -> bool:
    return int(await admin.run("faults.waiting", load.ADMIN_NAME)) == 1


async def _committed(admin: load.Admin) -> bool:
    return len(await admin.run("faults.usernames")) == 2


async def test_expired_keys_are_purged_in_bounded_batches_then_free(settings: Settings, database_url):
    short = settings.with_overrides(idempotency_ttl=0.2)
    with ThreadServer(short) as server:
        async with load.client(server.base_url) as c:
            for i in range(25):
                body = new_user(username=f"purged{i}", email=f"purged{i}@example.com")
                assert (
                    await c.post("/api/v1/users", json=body, headers={"Idempotency-Key": f"k{i}"})
                ).status_code == 201
    db = await Database.connect(short, Registry.load(PROJECT_ROOT / "sql"))
    try:
        async with load.admin(database_url) as admin:
            await until(lambda: _none_live(admin), what="every key expired")
        assert await idempotency.purge_expired(db, batch=10, batches=2) == 20
        assert await idempotency.purge_expired(db, batch=10, batches=2) == 5
        assert await idempotency.purge_expired(db, batch=10, batches=2) == 0
    finally:
        await db.close()
    with ThreadServer(short) as server:
        async with load.client(server.base_url) as c:
            # k0 is free again: another request with it is a new request, not a reuse.
            fresh = await c.post("/api/v1/users", json=new_user(), headers={"Idempotency-Key": "k0"})
    assert fresh.status_code == 201
    assert "idempotent-replayed" not in fresh.headers


async def _none_live(admin: load.Admin) -> bool:
    return int(await admin.run("idempotency.live")) == 0
