"""The per-caller application_name through PgBouncer: each client sees its own, never the previous one's.

The service names the caller with ``set_config('application_name', …, false)`` (a session setting).
PgBouncer tracks application_name per *client* (from the startup packet and from the server's
ParameterStatus reports) and sets it on whichever server connection serves that client next, so the
name follows the client, not the server connection. A single server connection shared by two clients
shows it: what one client set never shows up in the other's session. (pg_stat_activity shows the same
value: the test through the HTTP service is tests/pooler/test_contract.py's
test_the_callers_name_reaches_the_database_session.)
"""

from __future__ import annotations

import asyncpg
import pytest

from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT
from datasvc.statements import execute
from tests.support.load import TEST_SQL
from tests.support.pgbouncer import PgBouncer, dbname
from tests.support.pgserver import APP_ROLE

SET_NAME = Registry.load(PROJECT_ROOT / "sql")["session.set_application_name"]
MY_NAME = TEST_SQL["pooler.my_name"]


@pytest.mark.parametrize("version", ["1.24", "1.18"])
async def test_a_callers_name_never_leaks_to_the_next_client_of_the_server_connection(version, database_url):
    with PgBouncer(version, pool_size=1) as bouncer:  # one server connection for both clients
        url = bouncer.url(dbname(database_url), APP_ROLE)
        a = await asyncpg.connect(url, server_settings={"application_name": "datasvc"})
        b = await asyncpg.connect(url, server_settings={"application_name": "datasvc"})
        try:
            await execute(a, SET_NAME, ("datasvc:billing",))
            assert await execute(b, MY_NAME, ()) == "datasvc"
            assert await execute(a, MY_NAME, ()) == "datasvc:billing"
            assert a.get_settings().application_name == "datasvc:billing"  # how the service knows
            assert await execute(b, MY_NAME, ()) == "datasvc"
        finally:
            await a.close()
            await b.close()
