"""Bearer-token authentication: 401/403 as problems, scopes per operation, open mode, caller auditing."""

from __future__ import annotations

import asyncio
import io
import logging
import threading
import time
from collections.abc import Iterator

import asyncpg
import httpx2
import pytest
from starlette.testclient import TestClient

from datasvc import cli
from datasvc.app import create_app
from datasvc.auth import AuthConfigError, Authenticator, hash_token, parse_entries
from datasvc.settings import Settings
from tests.support.access import access_lines
from tests.support.servers import ThreadServer
from tests.support.values import HASH

TOKENS = {
    "reader": ("reader-token-0123456789", "users:read"),
    "writer": ("writer-token-0123456789", "users:read,users:write"),
    "login": ("login-token-0123456789", "credentials:read"),
}
CONFIG = "; ".join(f"{name} {scopes} {hash_token(token)}" for name, (token, scopes) in TOKENS.items())


def bearer(caller: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[caller][0]}"}


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    return settings.with_overrides(auth_tokens=CONFIG)


@pytest.fixture
def secured(auth_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(auth_settings)) as client:
        yield client


def new_user(client: TestClient, username: str = "alice") -> dict[str, object]:
    body = {"email": f"{username}@example.org", "username": username, "hashed_password": HASH}
    response = client.post("/api/v1/users", json=body, headers=bearer("writer"))
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def assert_problem(response: httpx2.Response, status: int, slug: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:datasvc:problem:{slug}"


def test_missing_token_is_401_with_bearer_challenge(secured):
    response = secured.get("/api/v1/users/1")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-configured-token",
        "Bearer " + TOKENS["reader"][0] + "x",
        "Bearer",
        "Bearer two tokens",
        "Bearer " + "a" * 600,
        "bearer\treader-token-0123456789",
    ],
    ids=["unknown", "suffixed", "empty", "two-words", "huge", "tab"],
)
def test_bad_token_is_401_invalid_token(secured, header):
    response = secured.get("/api/v1/users/1", headers={"Authorization": header})
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == 'Bearer error="invalid_token"'


@pytest.mark.parametrize("header", ["Basic cmVhZGVyOnNlY3JldA==", "Digest username=x", "Negotiate"])
def test_another_scheme_is_challenged_without_an_error_code(secured, header):
    # RFC 6750 section 3.1: no bearer token was presented, so the challenge names no error.
    response = secured.get("/api/v1/users/1", headers={"Authorization": header})
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"


def test_scheme_is_case_insensitive(secured):
    user = new_user(secured)
    response = secured.get(
        f"/api/v1/users/{user['id']}", headers={"Authorization": "bEaReR " + TOKENS["reader"][0]}
    )
    assert response.status_code == 200


def test_read_scope_reads_but_cannot_write(secured):
    user = new_user(secured)
    assert secured.get(f"/api/v1/users/{user['id']}", headers=bearer("reader")).status_code == 200
    body = {"email": "bob@example.org", "username": "bob", "hashed_password": HASH}
    assert_problem(secured.post("/api/v1/users", json=body, headers=bearer("reader")), 403, "forbidden")
    patched = secured.patch(f"/api/v1/users/{user['id']}", json={"bio": "x"}, headers=bearer("reader"))
    assert_problem(patched, 403, "forbidden")
    deleted = secured.delete(f"/api/v1/users/{user['id']}", headers=bearer("reader"))
    assert_problem(deleted, 403, "forbidden")
    assert secured.get(f"/api/v1/users/{user['id']}", headers=bearer("reader")).json()["bio"] is None


def test_credentials_need_their_own_scope(secured):
    new_user(secured)
    for caller in ("reader", "writer"):
        response = secured.post("/api/v1/auth/lookup", json={"login": "alice"}, headers=bearer(caller))
        assert_problem(response, 403, "forbidden")
    response = secured.post("/api/v1/auth/lookup", json={"login": "alice"}, headers=bearer("login"))
    assert response.status_code == 200
    assert response.json()["hashed_password"] == HASH
    # ... and that scope alone reads no user record.
    assert_problem(secured.get("/api/v1/users/1", headers=bearer("login")), 403, "forbidden")


def test_auth_is_checked_before_the_body_or_the_path(secured):
    """A stranger learns nothing about the input rules or the resources from the status code."""
    assert secured.get("/api/v1/users/not-a-number").status_code == 401
    assert (
        secured.post("/api/v1/users", content=b"{", headers={"content-type": "application/json"}).status_code
        == 401
    )
    assert secured.get("/api/v1/users/by_username/nobody").status_code == 401


@pytest.mark.parametrize("path", ["/health", "/health/ready", "/openapi.json"])
def test_health_and_openapi_stay_open(secured, path):
    assert secured.get(path).status_code == 200


def test_open_mode_serves_everyone_and_warns_at_start_up(settings, caplog):
    with caplog.at_level(logging.WARNING, logger="datasvc.auth"), TestClient(create_app(settings)) as client:
        new_user(client)
        assert client.get("/api/v1/users/by_username/alice").status_code == 200
    warnings = [r for r in caplog.records if r.name == "datasvc.auth" and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "AUTHENTICATION IS OFF" in warnings[0].getMessage()


def test_caller_is_in_the_access_log(secured, capfd):
    access_lines(secured.app, capfd)
    secured.get("/api/v1/users/1", headers=bearer("reader"))
    secured.get("/api/v1/users/1", headers={"Authorization": "Bearer wrong"})
    callers = [line.get("caller", "absent") for line in access_lines(secured.app, capfd)]
    assert callers == ["reader", None]


def test_tokens_file_is_read(settings, tmp_path):
    path = tmp_path / "tokens"
    path.write_text(f"# the login service\nlogin credentials:read {hash_token('from-a-file')}\n")
    with TestClient(create_app(settings.with_overrides(auth_tokens_file=path))) as client:
        response = client.post(
            "/api/v1/auth/lookup", json={"login": "x"}, headers={"Authorization": "Bearer from-a-file"}
        )
    assert response.status_code == 404  # authenticated, authorized, and no such user


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("reader users:read", "expected 'caller scopes sha256hex'"),
        ("reader users:admin " + "0" * 64, "unknown scope"),
        ("reader users:read " + "0" * 63, "64 lowercase hex"),
        ("reader users:read " + "A" * 64, "64 lowercase hex"),
        ("read/er users:read " + "0" * 64, "caller name"),
        ("reader , " + "0" * 64, "at least one scope"),
    ],
    ids=["fields", "scope", "short-hash", "uppercase", "name", "no-scope"],
)
def test_bad_entries_fail_at_load_with_their_location(entry, message):
    with pytest.raises(AuthConfigError, match=rf"^env:2: .*{message}"):
        parse_entries(f"# comment\n{entry}", "env")


def test_a_token_configured_twice_is_refused():
    text = f"a users:read {'0' * 64}; b users:write {'0' * 64}"
    with pytest.raises(AuthConfigError, match="configured twice"):
        Authenticator(parse_entries(text, "env"))


def test_a_missing_tokens_file_is_a_settings_error(settings, tmp_path):
    with pytest.raises(AuthConfigError, match="DATASVC_AUTH_TOKENS_FILE"):
        create_app(settings.with_overrides(auth_tokens_file=tmp_path / "absent"))


def test_cli_token_hash_prints_sha256(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("abc\n"))
    assert cli.main(["token", "hash"]) == 0
    # The FIPS 180-2 test vector for "abc".
    assert (
        capsys.readouterr().out.strip() == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_cli_token_new_prints_a_token_and_its_hash(capsys):
    assert cli.main(["token", "new"]) == 0
    lines = dict(line.split(None, 1) for line in capsys.readouterr().out.splitlines())
    assert hash_token(lines["token"].strip()) == lines["sha256"].strip()


@pytest.mark.pooler
def test_the_callers_name_reaches_the_database_session(auth_settings, database_url):
    """While a request waits on a row lock, pg_stat_activity shows which caller it serves."""

    async def hold_lock_and_look(user_id: int, base_url: str) -> list[str]:
        holder = await asyncpg.connect(database_url)
        watcher = await asyncpg.connect(database_url)
        try:
            tx = holder.transaction()
            await tx.start()
            await holder.execute("SELECT 1 FROM users WHERE id = $1 FOR UPDATE", user_id)
            done = threading.Event()

            def patch() -> None:
                httpx2.patch(
                    f"{base_url}/api/v1/users/{user_id}",
                    json={"bio": "b"},
                    headers=bearer("writer"),
                    timeout=10,
                )
                done.set()

            thread = threading.Thread(target=patch)
            thread.start()
            names: list[str] = []
            deadline = time.monotonic() + 30  # a bound on a hang: the loop ends at the first sighting
            while not names and time.monotonic() < deadline:
                rows = await watcher.fetch(
                    "SELECT application_name FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                names = [r["application_name"] for r in rows]
                await asyncio.sleep(0.02)
            await tx.rollback()
            await asyncio.to_thread(thread.join, 10)
            assert done.is_set()
            return names
        finally:
            await holder.close()
            await watcher.close()

    with ThreadServer(auth_settings) as server:
        created = httpx2.post(
            f"{server.base_url}/api/v1/users",
            json={"email": "a@example.org", "username": "alice", "hashed_password": HASH},
            headers=bearer("writer"),
        )
        assert created.status_code == 201, created.text
        names = asyncio.run(hold_lock_and_look(created.json()["id"], server.base_url))
    assert names == ["datasvc:writer"]
