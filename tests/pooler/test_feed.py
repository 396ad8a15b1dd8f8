"""The change feed behind PgBouncer in transaction mode: no LISTEN there, the waiters poll.

Parametrised over PgBouncer 1.24 and 1.18 by the ``settings`` fixture of this folder (tests/pooler/).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from starlette.testclient import TestClient

FEED = "/api/v1/users/changes"
HASH = "$2b$12$" + "a" * 53


def test_no_listening_connection_behind_a_transaction_pooler(client: TestClient) -> None:
    listener = client.app_state["listener"]
    assert not listener.listens
    assert listener.poll == 0.25


def test_a_long_poll_answers_a_write_made_elsewhere(client: TestClient, database_url: str) -> None:
    start = client.get(FEED, params={"from": "now"}).json()["next_cursor"]
    answers: list[Any] = []
    began = time.monotonic()
    poll = threading.Thread(
        target=lambda: answers.append(client.get(FEED, params={"after": start, "wait": 20}))
    )
    poll.start()
    with psycopg.connect(database_url, autocommit=True) as conn:  # another process's write: no wake-up
        conn.execute(
            "INSERT INTO users (email, username, hashed_password) VALUES ('far@example.com', 'far', %s)",
            (HASH,),
        )
    poll.join(timeout=30)
    assert [i["op"] for i in answers[0].json()["items"]] == ["create"]
    # Found by the next poll (every 0.25 s); 10 s bounds a loaded CI machine, half the wait.
    assert time.monotonic() - began < 10


def test_following_through_the_pooler_sees_each_change_once(client: TestClient) -> None:
    ids = [
        client.post(
            "/api/v1/users",
            json={"email": f"p{i}@example.com", "username": f"pooled{i}", "hashed_password": HASH},
        ).json()["id"]
        for i in range(5)
    ]
    seen: list[int] = []
    cursor = None
    while True:
        page = client.get(FEED, params={"limit": 2, **({"after": cursor} if cursor else {})}).json()
        cursor = page["next_cursor"]
        seen += [i["id"] for i in page["items"]]
        if not page["items"] and len(seen) >= len(ids):  # an empty read may come first: see test_changes
            break
    assert seen == ids
