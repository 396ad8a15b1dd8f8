"""The private APIs of dependencies that datasvc relies on, each test naming the assumption it makes.

pyproject.toml pins each of these dependencies to the versions these tests passed with. Before raising a
bound, run this file against the new version: a failure here says which assumption broke, where the same
break would otherwise show up as a wrong answer deep inside a request.
"""

from __future__ import annotations

import inspect
from importlib.metadata import version

import asyncpg
import pytest
from uvicorn.config import Config
from uvicorn.protocols.http import httptools_impl
from uvicorn.server import ServerState

from datasvc.protocol import HeadLimitedHttpToolsProtocol
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT

REGISTRY = Registry.load(PROJECT_ROOT / "sql")

# datasvc/protocol.py overrides these callbacks of uvicorn's HttpToolsProtocol, calling super() in each:
# the parser calls them by these names with these parameters.
UVICORN_HOOKS = {
    "data_received": ["data"],
    "on_message_begin": [],
    "on_url": ["url"],
    "on_header": ["name", "value"],
    "on_headers_complete": [],
    "send_400_response": ["msg"],
    "on_response_complete": [],
}
# ... and reads these attributes of the protocol and of its request cycle.
UVICORN_PROTOCOL_ATTRIBUTES = ("app_state", "connections", "pipeline", "cycle")
UVICORN_CYCLE_PARAMETERS = ("keep_alive",)
UVICORN_CYCLE_ATTRIBUTES = ("response_complete", "keep_alive", "scope")


def _uvicorn(assumption: str) -> str:
    return (
        f"uvicorn {version('uvicorn')}: datasvc/protocol.py assumes {assumption} "
        "(a private API: see the pin in pyproject.toml)"
    )


@pytest.mark.parametrize(("hook", "parameters"), UVICORN_HOOKS.items())
def test_uvicorn_httptools_protocol_has_the_callbacks_we_override(hook: str, parameters: list[str]) -> None:
    method = getattr(httptools_impl.HttpToolsProtocol, hook, None)
    assert callable(method), _uvicorn(f"HttpToolsProtocol.{hook} exists")
    found = list(inspect.signature(method).parameters)[1:]
    assert found == parameters, _uvicorn(f"HttpToolsProtocol.{hook}(self, {', '.join(parameters)})")


async def test_uvicorn_httptools_protocol_keeps_the_state_we_read() -> None:
    async def app(scope: object, receive: object, send: object) -> None:
        raise AssertionError("not called")

    config = Config(app, http=HeadLimitedHttpToolsProtocol)
    config.load()
    protocol = HeadLimitedHttpToolsProtocol(config=config, server_state=ServerState(), app_state={})
    for name in UVICORN_PROTOCOL_ATTRIBUTES:
        assert hasattr(protocol, name), _uvicorn(f"HttpToolsProtocol instances have .{name}")
    cycle = inspect.signature(httptools_impl.RequestResponseCycle.__init__).parameters
    for name in UVICORN_CYCLE_PARAMETERS:
        assert name in cycle, _uvicorn(f"RequestResponseCycle takes {name}")
    source = inspect.getsource(httptools_impl.RequestResponseCycle.__init__)
    for name in UVICORN_CYCLE_ATTRIBUTES:
        assert f"self.{name} =" in source, _uvicorn(f"RequestResponseCycle sets .{name}")


async def test_asyncpg_unnamed_statement_can_be_marked_unprepared(database_url: str) -> None:
    """datasvc/statements.py sends ``-- plan-cache: custom`` statements as PostgreSQL's unnamed statement:
    ``conn.prepare(text, name="")`` then ``prepared._state.mark_unprepared()``, so asyncpg sends Parse with
    every Bind (asyncpg's own path when its statement cache is off) and no named statement is left."""
    message = (
        f"asyncpg {asyncpg.__version__}: datasvc/statements.py assumes PreparedStatement._state."
        "mark_unprepared() makes the next execution parse the unnamed statement again (a private API: "
        "see the pin in pyproject.toml)"
    )
    lookup, other = REGISTRY["users.get_by_id"], REGISTRY["session.privileges"]
    conn = await asyncpg.connect(database_url)
    try:
        prepared = await conn.prepare(lookup.text, name="")
        assert callable(getattr(getattr(prepared, "_state", None), "mark_unprepared", None)), message
        prepared._state.mark_unprepared()
        # Another unnamed statement replaces ours on the server: only a fresh Parse with our Bind (which
        # marking it unprepared asks for) runs ours; a Bind alone would reach the other one and fail.
        replacing = await conn.prepare(other.text, name="")
        replacing._state.mark_unprepared()
        assert await prepared.fetchrow(987654321) is None, message
        assert (await replacing.fetchrow())["login_role"], message
    finally:
        await conn.close()


async def test_asyncpg_says_whether_a_connection_still_awaits_a_cancel(database_url: str) -> None:
    """`datasvc.connections.reusable` lets a connection serve the next request only if
    ``conn._protocol._is_cancelling()`` is False: after a caller's deadline cancelled its statement
    (``Prefer: wait``), the server's answer to the cancel request is still due, and only asyncpg's own
    release waits for it."""
    message = (
        f"asyncpg {asyncpg.__version__}: datasvc/connections.py assumes "
        "Connection._protocol._is_cancelling() (a private API: see the pin in pyproject.toml)"
    )
    conn = await asyncpg.connect(database_url)
    try:
        assert callable(getattr(getattr(conn, "_protocol", None), "_is_cancelling", None)), message
        assert conn._protocol._is_cancelling() is False, message
    finally:
        await conn.close()
