"""Tracing behind PgBouncer in transaction mode: the sqlcommenter comment reaches PostgreSQL, nothing else
changes.

A sampled request's statements are sent as the unnamed statement with the comment in their text; an
unsampled request's as always (asyncpg's prepared statements, which PgBouncer 1.24 tracks; with 1.18 the
statement cache is off anyway). PostgreSQL's own view (``pg_stat_activity``, read directly, not through
PgBouncer) shows the comment with the trace id, and the answers are the same as without tracing.
"""

from __future__ import annotations

import httpx2

from datasvc.registry import Registry
from datasvc.settings import Settings
from tests.support.load import ADMIN_NAME, admin
from tests.support.otlp import Receiver
from tests.support.servers import ThreadServer
from tests.support.values import HASH

SAMPLED = "5" * 32
UNSAMPLED = "6" * 32
PARENT = "00f067aa0ba902b7"
CLIENT = 3


async def test_the_comment_reaches_postgresql_through_the_pooler(
    settings: Settings, database_url: str
) -> None:
    plain = Registry.load(settings.sql_dir)["users.get_by_id"]
    with Receiver() as receiver:
        traced = settings.with_overrides(otel_exporter_otlp_endpoint=receiver.endpoint)
        with ThreadServer(traced) as server, httpx2.Client(base_url=server.base_url) as client:
            body = {"email": "ada@example.org", "username": "ada", "hashed_password": HASH}
            created = client.post("/api/v1/users", json=body)
            assert created.status_code == 201
            user = created.json()
            path = f"/api/v1/users/{user['id']}"
            answers = []
            postgres_saw: dict[str, list[str]] = {}  # trace id -> the service's backends' last statements
            for trace_id, flags in ((SAMPLED, "01"), (UNSAMPLED, "00")):
                answers.append(client.get(path, headers={"traceparent": f"00-{trace_id}-{PARENT}-{flags}"}))
                async with admin(database_url) as conn:
                    rows = await conn.run("tracing.service_statements", ADMIN_NAME)
                postgres_saw[trace_id] = [row["query"] for row in rows]
            untraced = client.get(path)
            spans = receiver.wait_for(
                lambda spans: any(s.trace_id == SAMPLED and s.kind == CLIENT for s in spans)
            )
    sampled, unsampled = answers
    assert [a.status_code for a in (sampled, unsampled, untraced)] == [200, 200, 200]
    assert sampled.json() == unsampled.json() == untraced.json() == user
    (statement,) = [s for s in spans if s.trace_id == SAMPLED and s.kind == CLIENT]
    comment = f"/*traceparent='00-{SAMPLED}-{statement.span_id}-01'*/"
    assert f"/* users.get_by_id */ {comment} {plain.sql}" in postgres_saw[SAMPLED]
    assert plain.text in postgres_saw[UNSAMPLED]
    assert not any(UNSAMPLED in q for q in postgres_saw[UNSAMPLED])
    assert not [s for s in spans if s.trace_id == UNSAMPLED]
