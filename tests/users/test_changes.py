"""The audit trail (migration 0015) and GET /api/v1/users/changes, against a real PostgreSQL.

Writes come through the API and straight from psycopg (as psql would make them): the trail records both,
and the feed hands out every committed change once, a transaction left open while others commit included.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import psycopg
import pytest
from starlette.testclient import TestClient

from datasvc.settings import PROJECT_ROOT, Settings
from tests.support.servers import ThreadServer
from tests.support.waits import until_blocking

HASH = "$2b$12$" + "a" * 53
OTHER_HASH = "$2b$12$" + "b" * 53
FEED = "/api/v1/users/changes"


def create(client: TestClient, name: str) -> dict[str, Any]:
    response = client.post(
        "/api/v1/users", json={"email": f"{name}@example.com", "username": name, "hashed_password": HASH}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def follow(
    client: TestClient, cursor: str | None = None, until: int = 0, **params: Any
) -> tuple[list[dict[str, Any]], str]:
    """The changes after ``cursor`` the feed hands out, at least ``until`` of them, and the cursor after.

    A read may come back empty while a transaction of another database on the shared test server ends
    (the feed holds back until it can tell): keep reading until ``until`` changes came.
    """
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30  # a bound on a hang, not a timing assertion
    while True:
        query = {**params, **({"after": cursor} if cursor else {})}
        response = client.get(FEED, params=query)
        assert response.status_code == 200, response.text
        page = response.json()
        cursor = page["next_cursor"]
        seen += page["items"]
        if not page["items"] and len(seen) >= until:
            return seen, cursor
        assert time.monotonic() < deadline, f"{len(seen)} of {until} changes"


@pytest.fixture
def sql(database_url: str) -> Iterator[psycopg.Connection]:
    """A superuser session on the test database, autocommit, as a DBA's psql."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        yield conn


def test_trail_records_each_write_with_its_caller_and_changed_columns(
    client: TestClient, sql: psycopg.Connection
) -> None:
    user = create(client, "ada")
    client.patch(f"/api/v1/users/{user['id']}", json={"bio": "x", "full_name": None})
    sql.execute("SET application_name = 'psql'")
    sql.execute(
        "UPDATE users SET hashed_password = %s, status = 'inactive' WHERE id = %s", (OTHER_HASH, user["id"])
    )
    assert client.delete(f"/api/v1/users/{user['id']}").status_code == 204

    items, _ = follow(client, until=4)

    assert [(i["op"], i["id"], i["version"]) for i in items] == [
        ("create", user["id"], 1),
        ("update", user["id"], 2),
        ("update", user["id"], 3),
        ("delete", user["id"], 4),
    ]
    assert items[0]["changed"] is None
    assert items[3]["changed"] is None
    # full_name was null and stays null: only bio changed, though the PATCH sets every settable column.
    assert items[1]["changed"] == {"bio": {"old": None, "new": "x"}}
    assert items[2]["changed"] == {"status": {"old": "active", "new": "inactive"}, "hashed_password": {}}
    assert items[1]["caller"] == "datasvc"
    assert items[2]["caller"] == "psql"
    role = sql.execute("SELECT db_user FROM users_changes WHERE version_after = 3").fetchone()
    assert role == ("postgres",)


def test_hashed_password_never_appears_in_the_trail(client: TestClient, sql: psycopg.Connection) -> None:
    user = create(client, "grace")
    sql.execute("UPDATE users SET hashed_password = %s WHERE id = %s", (OTHER_HASH, user["id"]))
    dump = sql.execute("SELECT string_agg(to_jsonb(c)::text, ' ') FROM users_changes AS c").fetchone()
    assert dump is not None
    assert "hashed_password" in dump[0]
    assert HASH not in dump[0]
    assert OTHER_HASH not in dump[0]
    assert "a" * 53 not in client.get(FEED).text


def test_the_service_cannot_write_the_trail(sql: psycopg.Connection) -> None:
    sql.execute("SET ROLE datasvc_app")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        sql.execute(
            "INSERT INTO users_changes (xid, op, user_id, version_after, changed_at, caller, db_user) "
            "VALUES ('1', 'create', 1, 1, now(), 'x', 'x')"
        )


def test_a_late_commit_is_handed_out_once_after_the_earlier_ones(
    client: TestClient, sql: psycopg.Connection, database_url: str
) -> None:
    first = create(client, "early")
    items, cursor = follow(client, until=1)
    assert [i["id"] for i in items] == [first["id"]]
    with psycopg.connect(database_url) as late:  # a transaction opened, written to, left open
        late.execute("UPDATE users SET bio = 'late' WHERE id = %s", (first["id"],))
        after = [create(client, f"after{i}")["id"] for i in range(3)]
        held, cursor = follow(client, cursor)
        assert held == []  # committed, but behind a transaction that is still running
        late.commit()
    items, cursor = follow(client, cursor, until=4)
    assert [(i["op"], i["id"]) for i in items] == [("update", first["id"])] + [("create", i) for i in after]
    assert follow(client, cursor)[0] == []
    everything, _ = follow(client, until=5)
    assert len(everything) == 5
    assert len({(i["id"], i["version"]) for i in everything}) == 5


def test_concurrent_writers_each_change_is_seen_once(client: TestClient, database_url: str) -> None:
    writers, per_writer = 5, 40

    def write(n: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for i in range(per_writer):
                conn.execute(
                    "INSERT INTO users (email, username, hashed_password) VALUES (%s, %s, %s)",
                    (f"w{n}_{i}@example.com", f"w{n}_{i}", HASH),
                )

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    seen: list[dict[str, Any]] = []
    cursor = None
    deadline = time.monotonic() + 60  # a bound on a hang, not a timing assertion
    while len(seen) < writers * per_writer and time.monotonic() < deadline:
        items, cursor = follow(client, cursor, limit=7)
        seen += items
    for t in threads:
        t.join()
    seen += follow(client, cursor, until=writers * per_writer - len(seen))[0]
    ids = [i["id"] for i in seen]
    assert len(ids) == writers * per_writer == len(set(ids))


def test_from_now_skips_what_came_before(client: TestClient) -> None:
    create(client, "before")
    page = client.get(FEED, params={"from": "now"}).json()
    assert page["items"] == []
    later = create(client, "later")
    items, _ = follow(client, page["next_cursor"], until=1)
    assert [i["id"] for i in items] == [later["id"]]


def test_a_cursor_behind_the_purge_is_410(client: TestClient, sql: psycopg.Connection) -> None:
    for name in ("one", "two", "three"):
        create(client, name)
    start = ""
    while not start:  # the cursor after the first change (a read may come back empty: see follow)
        page = client.get(FEED, params={"limit": 1}).json()
        start = page["next_cursor"] if page["items"] else ""
    _, end = follow(client, until=3)
    sql.execute("SELECT users_changes_purge('0 s', 1000)")
    response = client.get(FEED, params={"after": start})
    assert response.status_code == 410
    problem = response.json()
    assert problem["type"] == "urn:datasvc:problem:cursor-expired"
    assert problem["field"] == "query.after"
    assert client.get(FEED, params={"after": end}).json()["items"] == []  # nothing after it was purged


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "1001"}, "query.limit"),
        ({"limit": "0"}, "query.limit"),
        ({"wait": "31"}, "query.wait"),
        ({"from": "then"}, "query.from"),
        ({"from": "now", "after": "x"}, "query.from"),
        ({"after": "1.e30.x"}, "query.cursor"),
        ({"nope": "1"}, "query.nope"),
    ],
    ids=["limit-over", "limit-zero", "wait-over", "from-unknown", "from-and-after", "forged", "unknown"],
)
def test_bad_parameters_are_422(client: TestClient, params: dict[str, str], field: str) -> None:
    response = client.get(FEED, params=params)
    assert response.status_code == 422
    assert field in [e["field"] for e in response.json()["errors"]]


def test_a_listing_cursor_is_not_a_feed_cursor(client: TestClient) -> None:
    create(client, "aaa")
    create(client, "bbb")
    listing_cursor = client.get("/api/v1/users", params={"limit": 1}).json()["next_cursor"]
    assert client.get(FEED, params={"after": listing_cursor}).status_code == 422


def test_a_long_poll_answers_when_a_change_commits(client: TestClient, settings: Settings) -> None:
    start = client.get(FEED, params={"from": "now"}).json()["next_cursor"]
    answers: list[Any] = []
    poll = threading.Thread(
        target=lambda: answers.append(client.get(FEED, params={"after": start, "wait": 20}))
    )
    poll.start()
    user = create(client, "woken")
    poll.join(timeout=30)
    assert answers
    assert [i["id"] for i in answers[0].json()["items"]] == [user["id"]]


def test_a_long_poll_with_nothing_new_answers_empty_after_its_wait(client: TestClient) -> None:
    start = client.get(FEED, params={"from": "now"}).json()["next_cursor"]
    began = time.monotonic()
    page = client.get(FEED, params={"after": start, "wait": 1}).json()
    assert page["items"] == []
    assert time.monotonic() - began >= 1.0


def test_a_service_write_wakes_the_listening_connection(client: TestClient) -> None:
    listener = client.app_state["listener"]
    until_blocking(listener.connected.is_set, what="the LISTEN in place")
    create(client, "notifier")
    until_blocking(lambda: listener.notifications >= 1, what="the write's notification")


def test_a_dropped_listening_connection_loses_no_wake_up(client: TestClient, sql: psycopg.Connection) -> None:
    listener = client.app_state["listener"]
    until_blocking(listener.connected.is_set, what="the LISTEN in place")
    start = client.get(FEED, params={"from": "now"}).json()["next_cursor"]
    killed = sql.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE application_name = %s AND datname = current_database()",
        (listener.name,),
    ).fetchone()
    assert killed == (1,)
    answers: list[Any] = []
    began = time.monotonic()
    poll = threading.Thread(
        target=lambda: answers.append(client.get(FEED, params={"after": start, "wait": 20}))
    )
    poll.start()
    # Written with psql while the listening connection is down or coming back: nobody notifies it.
    sql.execute(
        "INSERT INTO users (email, username, hashed_password) VALUES ('gap@example.com', 'gap', %s)", (HASH,)
    )
    poll.join(timeout=30)
    assert [i["op"] for i in answers[0].json()["items"]] == ["create"]
    # One poll period (0.5 s) after the commit at most; 10 s bounds a loaded CI machine, half the wait.
    assert time.monotonic() - began < 10
    until_blocking(lambda: listener.drops == 1 and listener.connected.is_set(), what="the LISTEN back")


def _recorded(out: Path) -> tuple[list[tuple[int, int]], str | None]:
    """The changes of every whole line the consumer wrote, and the cursor of the last one."""
    changes: list[tuple[int, int]] = []
    cursor = None
    for line in (out.read_bytes() if out.exists() else b"").split(b"\n"):
        try:
            page = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue  # the partial line of a killed consumer (or the empty tail)
        changes += [(i, v) for i, v in page["changes"]]
        cursor = page["cursor"]
    return changes, cursor


def test_a_consumer_killed_and_resumed_sees_no_gap_and_no_repeat(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    writers, per_writer = 3, 150
    out = tmp_path / "consumed.jsonl"

    def write(n: int) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            for i in range(per_writer):
                conn.execute(
                    "INSERT INTO users (email, username, hashed_password) VALUES (%s, %s, %s)",
                    (f"k{n}_{i}@example.com", f"k{n}_{i}", HASH),
                )

    def consumer(cursor: str | None) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-m", "tests.support.feed_consumer", server.base_url, str(out)]
        return subprocess.Popen([*args, *([cursor] if cursor else [])], cwd=PROJECT_ROOT)

    with ThreadServer(settings) as server:
        threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
        for t in threads:
            t.start()
        first = consumer(None)
        try:
            until_blocking(
                lambda: len(_recorded(out)[0]) >= 100, timeout=60, what="a first consumer's progress"
            )
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        for t in threads:
            t.join()
        changes, cursor = _recorded(out)
        assert cursor is not None
        second = consumer(cursor)
        try:
            until_blocking(
                lambda: len(_recorded(out)[0]) >= writers * per_writer,
                timeout=60,
                what="the resumed consumer",
            )
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait()
    changes, _ = _recorded(out)
    assert len(changes) == len(set(changes)) == writers * per_writer
