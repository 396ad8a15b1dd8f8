"""More client connections than PgBouncer has server connections: what a request queued too long answers.

docs/scaling.md ("Sizing the pools behind PgBouncer") advises giving the service's pool as many client
connections as requests in flight, so requests wait in PgBouncer's queue rather than at the service's
gate, whose wait `DATASVC_ACQUIRE_TIMEOUT` bounds. PgBouncer bounds its own with ``query_wait_timeout``:
it then disconnects the client with an error. Here its one server connection is held by an open
transaction, and requests through the service wait in its queue until that timeout: they must answer
503 with ``Retry-After``, as an exhausted pool does, not 500 and not hang.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import asyncpg
import pytest
from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.settings import Settings
from tests.support import load
from tests.support.pgbouncer import PgBouncer, dbname, through
from tests.support.pgserver import APP_ROLE

WAIT = 1  # PgBouncer's query_wait_timeout, seconds (its granularity)


@pytest.fixture
def bouncer() -> Iterator[PgBouncer]:
    with PgBouncer("1.24", pool_size=1, settings={"query_wait_timeout": str(WAIT)}) as started:
        yield started


async def test_a_request_queued_in_pgbouncer_past_its_wait_timeout_is_503(
    plain_settings: Settings, bouncer: PgBouncer, database_url: str
) -> None:
    settings = through(plain_settings, bouncer, database_url, 100).with_overrides(pool_max_size=4)
    with TestClient(create_app(settings)) as client:
        created = client.post("/api/v1/users", json=load.unique_user("queued"))
        assert created.status_code == 201, created.text
        # The pool's one server connection, held by an open transaction of the same database and role.
        holder = await asyncpg.connect(bouncer.url(dbname(database_url), APP_ROLE), statement_cache_size=0)
        try:
            await holder.execute("BEGIN; SELECT 1")
            for method, path, body in [
                ("GET", f"/api/v1/users/{created.json()['id']}", None),
                ("POST", "/api/v1/users", load.unique_user("queued2")),
            ]:
                started = time.monotonic()
                answer = client.request(method, path, json=body)
                waited = time.monotonic() - started
                assert answer.status_code == 503, (method, answer.status_code, answer.text)
                assert answer.headers["retry-after"] == "1"
                assert answer.headers["content-type"] == "application/problem+json"
                # PgBouncer checks its timeouts about once a second: WAIT to 2 WAIT per attempt, and a
                # read is tried twice (a lost connection is retried once for `-- retry: safe`). At least
                # WAIT: the request did queue in PgBouncer. A hang would end in the statement timeout's
                # 504, which the status above refuses: no upper bound on a loaded machine's clock.
                assert waited >= WAIT * 0.9, (method, waited)
                print(f"{method}: {answer.status_code} {answer.json()['type']} after {waited:.2f} s")
        finally:
            await holder.close()
        # Once the server connection is free again, the same requests go through.
        assert client.get(f"/api/v1/users/{created.json()['id']}").status_code == 200
