"""Issue 9.3: behind a load balancer, what one instance hands out works on the other.

Two apps over one database, as two `datasvc serve` instances are: each its own pool and its own cursor
codec. Listing cursors verify on the other instance when both have the same ``DATASVC_CURSOR_SECRET``
(and, as the control shows, only then); ETags are the row's version, so they need nothing shared.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.settings import Settings
from tests.support import load


@contextmanager
def _two_instances(a: Settings, b: Settings) -> Iterator[tuple[TestClient, TestClient]]:
    with TestClient(create_app(a)) as first, TestClient(create_app(b)) as second:
        yield first, second


def _seed(client: TestClient, n: int) -> list[int]:
    return [client.post("/api/v1/users", json=load.unique_user("inst")).json()["id"] for _ in range(n)]


def test_a_cursor_from_one_instance_pages_on_the_other(settings: Settings):
    shared = settings.with_overrides(cursor_secret=secrets.token_urlsafe(32))
    with _two_instances(shared, shared) as (a, b):
        ids = _seed(a, 5)
        params: dict[str, str | int] = {"limit": 2, "sort_by": "id", "sort_order": "asc"}
        first = a.get("/api/v1/users", params=params).json()
        second = b.get("/api/v1/users", params={**params, "cursor": first["next_cursor"]})
        assert second.status_code == 200, second.text
        third = a.get("/api/v1/users", params={**params, "cursor": second.json()["next_cursor"]}).json()
        walked = [u["id"] for page in (first, second.json(), third) for u in page["items"]]
        assert walked == ids


def test_without_a_shared_secret_the_other_instance_refuses_the_cursor(settings: Settings):
    # Control: each instance then signs with a random secret of its own.
    with _two_instances(settings, settings) as (a, b):
        _seed(a, 3)
        first = a.get("/api/v1/users", params={"limit": 2}).json()
        refused = b.get("/api/v1/users", params={"limit": 2, "cursor": first["next_cursor"]})
        assert refused.status_code == 422
        assert refused.json()["errors"][0]["field"] == "query.cursor"


def test_an_etag_from_one_instance_is_honoured_by_the_other(settings: Settings):
    with _two_instances(settings, settings) as (a, b):
        (uid,) = _seed(a, 1)
        etag = a.get(f"/api/v1/users/{uid}").headers["etag"]
        assert b.get(f"/api/v1/users/{uid}", headers={"If-None-Match": etag}).status_code == 304
        changed = b.patch(f"/api/v1/users/{uid}", json={"bio": "b"}, headers={"If-Match": etag})
        assert changed.status_code == 200, changed.text
        stale = a.patch(f"/api/v1/users/{uid}", json={"bio": "a"}, headers={"If-Match": etag})
        assert stale.status_code == 412
        fresh = a.patch(
            f"/api/v1/users/{uid}", json={"bio": "a"}, headers={"If-Match": changed.headers["etag"]}
        )
        assert fresh.status_code == 200
