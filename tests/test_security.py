"""Least privilege in the database, no password hash outside auth/lookup, no mass assignment."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx2
import orjson
import pytest
from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.logs import JSONFormatter
from tests.support.access import access_lines
from tests.support.pgserver import APP_ROLE, as_role

# A valid bcrypt-shaped hash with a canary no other value contains.
CANARY = "LeakCanary"
HASH = "$2b$12$" + CANARY * 5 + "xyz"


async def _as_app(database_url: str, sql: str, *args: object) -> object:
    conn = await asyncpg.connect(as_role(database_url, APP_ROLE))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


# -- least privilege -------------------------------------------------------------------------------


def _insert(column: str, value: str) -> str:
    return (
        f"INSERT INTO users (email, username, hashed_password, {column}) VALUES ('a@b.io', 'ab', $1, {value})"
    )


@pytest.mark.parametrize(
    "sql",
    [
        # No DDL, no TRUNCATE, no writes to the migration bookkeeping.
        pytest.param("DROP TABLE users", id="drop"),
        pytest.param("TRUNCATE users", id="truncate"),
        pytest.param("ALTER TABLE users ADD COLUMN x int", id="add-column"),
        pytest.param("ALTER TABLE users DROP CONSTRAINT users_username_key", id="drop-constraint"),
        pytest.param("CREATE TABLE scratch (id int)", id="create-table"),
        pytest.param("CREATE INDEX ON users (bio)", id="create-index"),
        pytest.param("DROP TRIGGER users_touch_updated_at ON users", id="trigger"),
        pytest.param("DELETE FROM _yoyo_migration WHERE migration_id <> $1", id="yoyo"),
        # Column grants: server-owned columns are refused by the database too (mass assignment).
        pytest.param(_insert("is_admin", "true"), id="insert-is_admin"),
        pytest.param(_insert("status", "'active'"), id="insert-status"),
        pytest.param(_insert("created_at", "now()"), id="insert-created_at"),
        pytest.param("UPDATE users SET hashed_password = $1", id="update-hash"),
        pytest.param(
            "UPDATE users SET created_at = now() WHERE hashed_password = $1", id="update-created_at"
        ),
        pytest.param("UPDATE users SET username = 'other' WHERE hashed_password = $1", id="rename"),
    ],
)
def test_runtime_role_is_refused_ddl_and_protected_columns(database_url, sql):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        asyncio.run(_as_app(database_url, sql, *([HASH] if "$1" in sql else [])))


def test_timeouts_are_set_on_the_runtime_role(database_url):
    async def show() -> list[str]:
        # No server_settings: what a pooler or psql session gets from the role alone.
        conn = await asyncpg.connect(as_role(database_url, APP_ROLE))
        try:
            return [
                await conn.fetchval(f"SHOW {name}")
                for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")
            ]
        finally:
            await conn.close()

    assert asyncio.run(show()) == ["5s", "2s", "10s"]


def test_the_api_works_connected_as_the_runtime_role(settings, database_url):
    app_settings = settings.with_overrides(database_url=as_role(database_url, APP_ROLE))
    with TestClient(create_app(app_settings)) as client:
        assert client.get("/health/ready").status_code == 200
        body = {"email": "alice@example.org", "username": "alice", "hashed_password": HASH, "bio": "b"}
        created = client.post("/api/v1/users", json=body)
        assert created.status_code == 201, created.text
        path = created.headers["location"]
        assert client.get(path).status_code == 200
        assert client.get("/api/v1/users/by_email/ALICE@example.org").status_code == 200
        patch = {
            "email": "a2@example.org",
            "full_name": "A",
            "bio": None,
            "status": "inactive",
            "is_admin": True,
        }
        patched = client.patch(path, json={**patch, "is_verified": True})
        assert patched.status_code == 200, patched.text
        conditional = client.patch(path, json={"bio": "c"}, headers={"If-Match": patched.headers["etag"]})
        assert conditional.status_code == 200, conditional.text
        assert client.post("/api/v1/auth/lookup", json={"login": "alice"}).json()["hashed_password"] == HASH
        assert client.post("/api/v1/users", json=body).status_code == 409
        assert client.delete(path, headers={"If-Match": conditional.headers["etag"]}).status_code == 204
        assert client.delete(path).status_code == 404


def test_rollback_takes_the_grants_back_and_keeps_the_roles(database_url):
    from datasvc import migrations
    from datasvc.settings import PROJECT_ROOT

    ids = migrations.local_ids(PROJECT_ROOT / "migrations")
    migrations.rollback(database_url, PROJECT_ROOT / "migrations", len(ids) - ids.index("0003.runtime-roles"))
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            asyncio.run(_as_app(database_url, "SELECT count(*) FROM users"))

        async def roles() -> int:
            conn = await asyncpg.connect(database_url)
            try:
                return int(
                    await conn.fetchval(
                        "SELECT count(*) FROM pg_roles WHERE rolname IN ('datasvc_app', 'datasvc_owner')"
                    )
                )
            finally:
                await conn.close()

        assert asyncio.run(roles()) == 2  # other databases of the cluster may still use them
    finally:
        migrations.apply(database_url, PROJECT_ROOT / "migrations")
    assert asyncio.run(_as_app(database_url, "SELECT count(*) FROM users")) == 0


# -- hashed_password appears only in auth/lookup ---------------------------------------------------


@pytest.fixture
def logged(
    client: TestClient, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> Iterator[Callable[[], str]]:
    """Every log line of the test, as the service would print it: the stdlib records formatted as JSON,
    and the access log's lines, which bypass `logging` and reach stdout from their own writer thread."""
    formatter = JSONFormatter()
    with caplog.at_level(logging.DEBUG):
        # The test client's own loggers echo the URLs this test sends; only the service's lines count.
        yield lambda: "\n".join(
            [formatter.format(r) for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]
            + [orjson.dumps(line).decode() for line in access_lines(client.app, capfd)]
        )


def _no_canary(response: httpx2.Response, what: str) -> None:
    assert CANARY not in response.text, f"{what}: the hash leaked in the body"
    assert all(CANARY not in v for v in response.headers.values()), f"{what}: the hash leaked in a header"


def test_no_response_or_log_line_but_lookup_carries_the_hash(client, database_url, logged):
    """Sweep every operation of the OpenAPI document, on success and error paths."""
    created = client.post(
        "/api/v1/users", json={"email": "a@example.org", "username": "alice", "hashed_password": HASH}
    )
    assert created.status_code == 201
    uid = created.json()["id"]
    # A constraint only the database knows, so a database error fires on a row holding the hash
    # (asyncpg's message would quote it: "Failing row contains (...)").
    asyncio.run(
        _as_postgres(
            database_url, "ALTER TABLE users ADD CONSTRAINT canary_check CHECK (bio IS DISTINCT FROM 'boom')"
        )
    )
    new = {"email": "b@example.org", "username": "bob", "hashed_password": HASH}
    sweep: dict[str, list[tuple[str, str, dict[str, Any] | bytes | None]]] = {
        "createUser": [
            ("POST", "/api/v1/users", {**new, "bio": "boom"}),  # database check violation
            ("POST", "/api/v1/users", {**new, "username": "alice"}),  # 409
            ("POST", "/api/v1/users", {**new, "hashed_password": HASH + "\x00"}),  # NUL
            ("POST", "/api/v1/users", {**new, "hashed_password": HASH * 5}),  # too long
            ("POST", "/api/v1/users", {**new, "is_admin": True}),  # unknown field
            ("POST", "/api/v1/users", b'{"hashed_password": "' + HASH.encode() + b'"'),  # malformed
            ("POST", "/api/v1/users", new),  # 201
        ],
        "getUser": [("GET", f"/api/v1/users/{uid}", None), ("GET", "/api/v1/users/0", None)],
        "getUserByUsername": [("GET", "/api/v1/users/by_username/alice", None)],
        "getUserByEmail": [("GET", "/api/v1/users/by_email/a@example.org", None)],
        "updateUser": [
            ("PATCH", f"/api/v1/users/{uid}", {"bio": "boom"}),  # database check violation
            ("PATCH", f"/api/v1/users/{uid}", {"hashed_password": HASH}),  # not patchable
            ("PATCH", f"/api/v1/users/{uid}", {"bio": "fine"}),
        ],
        "listUsers": [("GET", "/api/v1/users", None), ("GET", f"/api/v1/users?search={HASH}", None)],
        "deleteUser": [("DELETE", "/api/v1/users/0", None)],
        "batchGetUsers": [
            ("POST", "/api/v1/users:batchGet", {"ids": [uid, 0]}),
            ("POST", "/api/v1/users:batchGet", {"usernames": [HASH]}),
            ("POST", "/api/v1/users:batchGet", {"ids": [HASH]}),  # 422
        ],
        "batchCreateUsers": [
            ("POST", "/api/v1/users:batchCreate", {"users": [{**new, "username": "carol"}]}),  # 409
            ("POST", "/api/v1/users:batchCreate", {"users": [{**new, "bio": "boom"}]}),  # check violation
            ("POST", "/api/v1/users:batchCreate", {"users": [{**new, "hashed_password": HASH * 5}]}),  # 422
            (
                "POST",
                "/api/v1/users:batchCreate",
                {"users": [{"email": "c@example.org", "username": "carol", "hashed_password": HASH}]},
            ),  # 201
        ],
        "exportUsers": [
            ("GET", "/api/v1/users/export", None),
            ("GET", f"/api/v1/users/export?search={HASH}", None),
        ],
        "listUserChanges": [
            ("GET", "/api/v1/users/changes", None),
            ("GET", f"/api/v1/users/changes?after={HASH}", None),
        ],
        "lookupCredentials": [],  # the one exception, checked below
        "health": [("GET", "/health", None)],
        "ready": [("GET", "/health/ready", None)],
        "metrics": [("GET", "/metrics", None)],
    }
    document = client.get("/openapi.json").json()
    _no_canary(client.get("/openapi.json"), "openapi")
    operations = {op["operationId"] for item in document["paths"].values() for op in item.values()}
    unswept = {o for o in operations if not o.endswith("Slash")} - set(sweep)
    assert not unswept, f"add these operations to the sweep: {sorted(unswept)}"
    statuses = []
    for requests in sweep.values():
        for method, path, body in requests:
            if isinstance(body, bytes):
                response = client.request(
                    method, path, content=body, headers={"content-type": "application/json"}
                )
            else:
                response = client.request(method, path, json=body)
            statuses.append(response.status_code)
            _no_canary(response, f"{method} {path}")
    assert {201, 200, 400, 404, 409, 422} <= set(statuses)
    lookup = client.post("/api/v1/auth/lookup", json={"login": "alice"})
    assert lookup.json()["hashed_password"] == HASH
    _no_canary(client.post("/api/v1/auth/lookup", json={"login": "nobody"}), "lookup 404")
    _no_canary(client.post("/api/v1/auth/lookup", json={"login": HASH + "\x00"}), "lookup 422")
    logs = logged()
    assert '"logger":"datasvc.access"' in logs  # the access log was captured
    assert CANARY not in logs, "the hash leaked into a log line"


async def _as_postgres(database_url: str, sql: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# -- mass assignment -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {"id": 1},
        {"is_admin": True},
        {"status": "suspended"},
        {"is_verified": True},
        {"created_at": "2000-01-01T00:00:00Z"},
        {"updated_at": "2000-01-01T00:00:00Z"},
        {"IS_ADMIN": True},
        {"is_admin ": True},
    ],
    ids=[
        "id",
        "is_admin",
        "status",
        "is_verified",
        "created_at",
        "updated_at",
        "upper-case",
        "trailing-space",
    ],
)
def test_create_cannot_set_server_owned_fields(client, extra):
    body = {"email": "a@example.org", "username": "alice", "hashed_password": HASH, **extra}
    response = client.post("/api/v1/users", json=body)
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": f"body.{next(iter(extra))}", "reason": "unknown field"}]
    assert client.get("/api/v1/users/by_username/alice").status_code == 404


@pytest.mark.parametrize(
    "change",
    [
        {"id": 999},
        {"created_at": "2000-01-01T00:00:00Z"},
        {"updated_at": "2000-01-01T00:00:00Z"},
        {"hashed_password": HASH.replace("x", "y")},
        {"username": "mallory"},
    ],
    ids=["id", "created_at", "updated_at", "hashed_password", "username"],
)
def test_patch_cannot_set_server_owned_fields(client, change):
    created = client.post(
        "/api/v1/users", json={"email": "a@example.org", "username": "alice", "hashed_password": HASH}
    )
    before = created.json()
    response = client.patch(created.headers["location"], json={"bio": "x", **change})
    assert response.status_code == 422
    assert client.get(created.headers["location"]).json() == before
    lookup = client.post("/api/v1/auth/lookup", json={"login": "alice"}).json()
    assert lookup["hashed_password"] == HASH
