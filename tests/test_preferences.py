"""RFC 7240 Prefer: return=minimal on writes, unknown preferences ignored, wait=N as the caller's deadline."""

from __future__ import annotations

import asyncio
import time

import pytest

from datasvc.settings import Settings
from tests.support import load
from tests.support.api import assert_problem, new_user
from tests.support.servers import ThreadServer
from tests.support.waits import until


def test_minimal_create_is_201_with_location_and_etag_and_no_body(client):
    response = client.post("/api/v1/users", json=new_user(), headers={"Prefer": "return=minimal"})
    assert response.status_code == 201, response.text
    assert response.content == b""
    assert response.headers["preference-applied"] == "return=minimal"
    assert response.headers["etag"] == '"1"'
    got = client.get(response.headers["location"])
    assert got.status_code == 200
    assert got.headers["etag"] == response.headers["etag"]


def test_minimal_patch_is_204_with_the_new_etag(client):
    user = client.post("/api/v1/users", json=new_user()).json()
    response = client.patch(
        f"/api/v1/users/{user['id']}", json={"bio": "short"}, headers={"Prefer": "return=minimal, wait=3"}
    )
    assert response.status_code == 204, response.text
    assert response.content == b""
    assert response.headers["preference-applied"] == "return=minimal, wait=3"
    got = client.get(f"/api/v1/users/{user['id']}")
    assert (got.json()["bio"], got.headers["etag"]) == ("short", response.headers["etag"])


@pytest.mark.parametrize(
    "prefer",
    ["respond-async", "return=representation", "wait=soon", "wait=-1", "handling=lenient; x=1", "return"],
)
def test_unknown_or_malformed_preferences_are_ignored(client, prefer):
    response = client.post("/api/v1/users", json=new_user(), headers={"Prefer": prefer})
    assert response.status_code == 201, response.text
    assert response.json()["username"] == "alice"
    assert "preference-applied" not in response.headers


def test_wait_is_capped_by_the_statement_timeout_and_named_when_applied(client, settings):
    user = client.post("/api/v1/users", json=new_user()).json()
    response = client.get(f"/api/v1/users/{user['id']}", headers={"Prefer": "wait=100"})
    assert response.status_code == 200
    assert response.headers["preference-applied"] == f"wait={settings.statement_timeout:g}"
    response = client.get(f"/api/v1/users/{user['id']}", headers={"Prefer": "wait=2.5"})
    assert response.headers["preference-applied"] == "wait=2.5"


async def _backends(admin: load.Admin) -> list[tuple[int, str]]:
    return [(row["pid"], row["state"]) for row in await admin.run("prefer.backends", load.ADMIN_NAME)]


async def test_past_the_wait_the_statement_is_cancelled_and_its_connection_serves_on(
    settings: Settings, database_url
):
    # One pooled connection: the request after the 504 can only be served by the cancelled one.
    settings = settings.with_overrides(pool_min_size=1, pool_max_size=1, lock_timeout=30.0)
    async with load.admin(database_url) as admin, load.admin(database_url) as locker:
        with ThreadServer(settings) as server:
            async with load.client(server.base_url) as c:
                user = (await c.post("/api/v1/users", json=new_user())).json()
                before = await _backends(admin)
                lock = locker.conn.transaction()
                await lock.start()
                await locker.run("faults.lock_user", user["id"])
                started = time.monotonic()
                # The deliberately slow statement: an UPDATE waiting on the row lock held above.
                slow = await c.patch(
                    f"/api/v1/users/{user['id']}", json={"bio": "late"}, headers={"Prefer": "wait=0.5"}
                )
                took = time.monotonic() - started
                right_after = await _backends(admin)
                await lock.rollback()
                after = await c.get(f"/api/v1/users/{user['id']}")
                last = await _backends(admin)
    body = assert_problem(slow, 504)
    assert body["type"].endswith(":deadline-exceeded")
    assert slow.headers["retry-after"] == "1"
    assert slow.headers["preference-applied"] == "wait=0.5"
    # Without the deadline the UPDATE waits for the lock (30 s here); 0.5 s plus a loaded machine's slack.
    assert 0.5 <= took < 10
    assert len(before) == 1
    assert right_after == [(before[0][0], "idle")]  # cancelled, not terminated: the same backend, idle
    assert after.status_code == 200
    assert after.json()["bio"] is None  # the cancelled UPDATE changed nothing
    assert last == right_after


async def test_the_wait_covers_the_wait_for_a_connection(settings: Settings, database_url):
    settings = settings.with_overrides(
        pool_min_size=1, pool_max_size=1, lock_timeout=30.0, acquire_timeout=20.0
    )
    async with load.admin(database_url) as admin, load.admin(database_url) as locker:
        with ThreadServer(settings) as server:
            async with load.client(server.base_url) as c:
                user = (await c.post("/api/v1/users", json=new_user())).json()
                lock = locker.conn.transaction()
                await lock.start()
                await locker.run("faults.lock_user", user["id"])
                held = asyncio.ensure_future(
                    c.patch(f"/api/v1/users/{user['id']}", json={"bio": "holds the connection"})
                )
                await until(lambda: _waiting(admin), what="the PATCH waits on the lock")
                started = time.monotonic()
                queued = await c.get(f"/api/v1/users/{user['id']}", headers={"Prefer": "wait=0.3"})
                took = time.monotonic() - started
                await lock.rollback()
                assert (await held).status_code == 200
    assert_problem(queued, 504)["type"].endswith(":deadline-exceeded")
    assert took < 10  # the pool would have kept it waiting up to acquire_timeout (20 s)


async def _waiting(admin: load.Admin) -> bool:
    return int(await admin.run("faults.waiting", load.ADMIN_NAME)) == 1
