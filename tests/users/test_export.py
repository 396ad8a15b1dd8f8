"""GET /api/v1/users/export against a real PostgreSQL: NDJSON and CSV equal the table, page after page.

Small tables here (a few pages of `PAGE` rows); the 1M-user proofs (checksum, RSS, a slow reader, the
throughput against COPY) run under the ``perf`` marker and in the benchmark.
"""

from __future__ import annotations

import csv
import hashlib
import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import orjson
import psycopg
import pytest
from starlette.testclient import TestClient

from datasvc.settings import Settings
from datasvc.users.export import PAGE, negotiate
from tests.support.servers import ThreadServer

EXPORT = "/api/v1/users/export"
ROWS = PAGE * 2 + 345  # three pages, the last one short


def seed(url: str, n: int = ROWS) -> None:
    """``n`` users straight into the table: every fifth inactive, every third verified, a few bios."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            """
            INSERT INTO users (email, username, hashed_password, full_name, bio)
            SELECT 'u' || g || '@example.com', 'user_' || g, repeat('h', 60),
                CASE WHEN g %% 7 = 0 THEN NULL ELSE 'Name, "quoted" ' || g END,
                CASE WHEN g %% 11 = 0 THEN E'two\\nlines' END
            FROM generate_series(1, %s) AS g
            """,
            (n,),
        )
        conn.execute("UPDATE users SET status = 'inactive' WHERE id % 5 = 0")
        conn.execute("UPDATE users SET is_verified = true WHERE id % 3 = 0")


def table_rows(url: str, where: str = "true") -> list[dict[str, Any]]:
    """The users as the export should show them, in id order (``where`` is a fixed clause of this file)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT to_jsonb(u) - 'hashed_password' - 'version' FROM users AS u WHERE "
            + where
            + " ORDER BY id"
        ).fetchall()
    return [r[0] for r in rows]


@pytest.fixture
def seeded(database_url: str) -> str:
    seed(database_url)
    return database_url


def _comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("created_at", "updated_at")}


def test_ndjson_is_every_user_once_in_id_order(client: TestClient, seeded: str) -> None:
    response = client.get(EXPORT)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    lines = response.content.splitlines()
    exported = [orjson.loads(line) for line in lines]
    expected = table_rows(seeded)
    assert [_comparable(r) for r in exported] == [_comparable(r) for r in expected]
    assert all("hashed_password" not in r for r in exported)
    assert exported[0]["created_at"].endswith("Z")


def test_csv_has_a_header_and_the_same_rows(client: TestClient, seeded: str) -> None:
    response = client.get(EXPORT, headers={"Accept": "text/csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert b"\r\n" in response.content
    reader = csv.DictReader(io.StringIO(response.content.decode(), newline=""))
    exported = list(reader)
    expected = table_rows(seeded)
    assert len(exported) == len(expected) == ROWS
    for got, want in zip(exported, expected, strict=True):
        assert int(got["id"]) == want["id"]
        assert got["full_name"] == (want["full_name"] or "")  # commas and quotes survive the quoting
        assert got["bio"] == (want["bio"] or "")  # so do line breaks
        assert got["is_verified"] == str(want["is_verified"]).lower()
    assert "hashed_password" not in reader.fieldnames  # type: ignore[operator]


def test_filters_and_search_are_the_listings(client: TestClient, seeded: str) -> None:
    response = client.get(EXPORT, params={"status": "inactive", "is_verified": "true"})
    ids = [orjson.loads(line)["id"] for line in response.content.splitlines()]
    assert ids == [r["id"] for r in table_rows(seeded, "status = 'inactive' AND is_verified")]
    response = client.get(EXPORT, params={"search": "USER_123"})
    ids = [orjson.loads(line)["id"] for line in response.content.splitlines()]
    assert ids == [r["id"] for r in table_rows(seeded, "username LIKE 'user\\_123%'")]


def test_checksum_equals_the_tables(client: TestClient, seeded: str) -> None:
    exported = sorted(orjson.loads(line)["id"] for line in client.get(EXPORT).content.splitlines())
    with psycopg.connect(seeded) as conn:
        cursor = conn.execute("SELECT md5(string_agg(id::text, ',' ORDER BY id)), count(*) FROM users")
        row = cursor.fetchone()
    assert row is not None
    assert (hashlib.md5(",".join(map(str, exported)).encode()).hexdigest(), len(exported)) == row


@pytest.mark.parametrize(
    ("accept", "media"),
    [
        (None, "application/x-ndjson"),
        ("*/*", "application/x-ndjson"),
        ("text/csv", "text/csv"),
        ("text/*", "text/csv"),
        ("application/x-ndjson;q=0.5, text/csv", "text/csv"),
        ("text/csv;q=0, */*", "application/x-ndjson"),
    ],
)
def test_accept_chooses_the_format(accept: str | None, media: str) -> None:
    assert negotiate(accept) == media


def test_an_unacceptable_accept_is_406(client: TestClient) -> None:
    response = client.get(EXPORT, headers={"Accept": "application/xml"})
    assert response.status_code == 406
    assert response.json()["type"] == "urn:datasvc:problem:not-acceptable"


def test_bad_filters_are_422(client: TestClient) -> None:
    response = client.get(EXPORT, params={"sort_by": "id"})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["query.sort_by"]


@pytest.fixture
def live(settings: Settings, database_url: str) -> Iterator[str]:
    """A real server (sockets: a client that stops reading, one that goes away)."""
    seed(database_url, PAGE * 20)
    with ThreadServer(settings) as server:
        yield server.base_url


def _in_use(base_url: str) -> float:
    """Connections of the primary's pool in use, from /metrics."""
    text = httpx2.get(base_url + "/metrics").text
    prefix = 'datasvc_db_pool_connections{state="in_use",target="primary"}'
    (line,) = [ln for ln in text.splitlines() if ln.startswith(prefix)]
    return float(line.rsplit(" ", 1)[1])


def _pool_idle(base_url: str) -> bool:
    """Whether the pool becomes idle (a released connection may be parked for a moment).

    The deadline only bounds a connection never given back: a loaded machine may take seconds.
    """
    deadline = time.monotonic() + 30
    while _in_use(base_url) > 0:
        if time.monotonic() > deadline:
            return False
        threading.Event().wait(0.05)  # polling /metrics: the condition is in another process's gauge
    return True


def test_one_export_per_caller_and_a_disconnect_frees_everything(live: str) -> None:
    base_url = live
    with httpx2.Client(base_url=base_url, timeout=10) as first, first.stream("GET", EXPORT) as stream:
        chunks = stream.iter_bytes()
        assert next(chunks)  # the export has started, and the client now stops reading
        assert httpx2.get(base_url + EXPORT).status_code == 429
        # A slow reader holds no connection: every page went back to the pool before it was sent.
        assert _pool_idle(base_url)
    # The client went away: the export stops and the caller may export again.
    done = threading.Event()

    def again() -> None:
        while httpx2.get(base_url + EXPORT, headers={"Accept": "text/csv"}).status_code == 429:
            pass
        done.set()

    threading.Thread(target=again, daemon=True).start()
    assert done.wait(30)
    assert _pool_idle(base_url)
