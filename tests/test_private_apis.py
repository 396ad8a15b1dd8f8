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

from datasvc import unnamed
from datasvc.protocol import HeadLimitedHttpToolsProtocol
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT
from datasvc.sqlfiles import Kind

REGISTRY = Registry.load(PROJECT_ROOT / "sql")

# datasvc/protocol.py overrides these callbacks of uvicorn's HttpToolsProtocol (the per-request ones
# replace uvicorn's body with a copy plus our checks): the parser and the cycle call them by these names
# with these parameters.
UVICORN_HOOKS = {
    "data_received": ["data"],
    "on_message_begin": [],
    "on_url": ["url"],
    "on_header": ["name", "value"],
    "on_headers_complete": [],
    "on_body": ["body"],
    "on_message_complete": [],
    "_start_asgi_task": ["cycle", "app"],
    "send_400_response": ["msg"],
    "on_response_complete": [],
    "pause_writing": [],
    "resume_writing": [],
}
# ... and reads these attributes of the protocol and of its request cycle.
UVICORN_PROTOCOL_ATTRIBUTES = (
    "app_state",
    "connections",
    "pipeline",
    "cycle",
    "flow",
    "tasks",
    "server_state",
    "timeout_keep_alive_task",
    "timeout_keep_alive",
    "asgi_version",
    "root_path",
    "logger",
    "access_logger",
    "access_log",
)
UVICORN_CYCLE_PARAMETERS = (
    "scope",
    "transport",
    "flow",
    "logger",
    "access_logger",
    "access_log",
    "default_headers",
    "message_event",
    "expect_100_continue",
    "keep_alive",
    "on_response",
)
UVICORN_CYCLE_ATTRIBUTES = ("response_complete", "keep_alive", "scope", "body", "more_body", "message_event")


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
    cycle = list(inspect.signature(httptools_impl.RequestResponseCycle.__init__).parameters)[1:]
    assert cycle == list(UVICORN_CYCLE_PARAMETERS), _uvicorn(f"RequestResponseCycle({', '.join(cycle)})")
    assert config.reset_contextvars is False, _uvicorn("Config.reset_contextvars exists, off by default")
    source = inspect.getsource(httptools_impl.RequestResponseCycle.run_asgi)
    assert "self.on_response = lambda: None" in source, _uvicorn("a finished cycle calls on_response no more")
    source = inspect.getsource(httptools_impl.RequestResponseCycle.__init__)
    for name in UVICORN_CYCLE_ATTRIBUTES:
        assert f"self.{name} =" in source, _uvicorn(f"RequestResponseCycle sets .{name}")


def _unnamed(assumption: str) -> str:
    return (
        f"asyncpg {asyncpg.__version__}: datasvc/unnamed.py assumes {assumption} "
        "(a private API: see the pin in pyproject.toml)"
    )


async def test_asyncpg_protocol_has_what_the_unnamed_path_drives(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for name in ("bind_execute", "prepare", "_is_cancelling", "_wait_for_cancellation"):
            assert callable(getattr(conn._protocol, name, None)), _unnamed(f"Connection._protocol.{name}()")
        assert callable(getattr(conn._transport, "write", None)), _unnamed("Connection._transport.write()")
        assert conn._protocol.queries_count >= 0, _unnamed("Protocol.queries_count")
        parameters = list(inspect.signature(conn._protocol.bind_execute).parameters)
        expected = ["state", "args", "portal_name", "limit", "return_extra", "timeout"]
        assert parameters == expected, _unnamed(f"Protocol.bind_execute({', '.join(expected)})")
        prepared = await conn.prepare(REGISTRY["users.get_by_id"].text, name="")
        message = _unnamed("PreparedStatement._state is the unnamed statement's PreparedStatementState")
        assert prepared._state.prepared, message
        assert prepared._state.name == "", message
    finally:
        await conn.close()


@pytest.mark.parametrize("cache", [100, 0], ids=["statement-cache", "no-statement-cache"])
async def test_asyncpg_sends_bind_behind_our_parse_in_one_round_trip(database_url: str, cache: int) -> None:
    """`datasvc.unnamed.execute` writes Parse itself, then ``bind_execute`` with the statement's template
    (described once per connection) writes Bind, Execute and Sync, and reads ParseComplete in front of its
    answer: the text parsed is ours, the types the template's. With asyncpg's statement cache off (as
    behind PgBouncer 1.18) too, where asyncpg's own unnamed state would send a Parse of its own."""
    template, ours = "SELECT $1::bigint + 0", "SELECT $1::bigint + 1"
    other = REGISTRY["session.privileges"]
    conn = await asyncpg.connect(database_url, statement_cache_size=cache)
    try:
        for _ in range(2):  # the first time describes the template, the second uses it
            got = await unnamed.execute(conn, Kind.VALUE, template, ours, (10,))
            assert got == 11, _unnamed("bind_execute with a prepared state sends no Parse of its own")
            # Another unnamed statement replaces ours on the server in between: only our Parse in front
            # of the Bind runs ours, a Bind alone would reach the other one and fail.
            assert (await unnamed.execute(conn, Kind.ONE, other.text, other.text, ()))["login_role"]
        assert await unnamed.execute(conn, Kind.MANY, template, ours, (1,)) == [(2,)]
        assert await unnamed.execute(conn, Kind.EXEC, template, ours, (1,)) == "SELECT 1"
    finally:
        await conn.close()


async def test_an_argument_asyncpg_cannot_encode_closes_the_connection(database_url: str) -> None:
    """Our Parse went without its Bind: the connection is not used again (its next answer would start
    with an unexpected ParseComplete)."""
    lookup = REGISTRY["users.get_by_id"]
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.DataError, match="invalid input for query argument"):
            await unnamed.execute(conn, Kind.ONE, lookup.text, lookup.text, ("not a number",))
        assert conn.is_closed(), _unnamed("Protocol.queries_count counts a query only once its Bind is sent")
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


def test_the_sdks_otlp_exporter_encodes_where_ours_replaces_it() -> None:
    """`datasvc.otlp.OTLPExporter.export` is the SDK's ``OTLPSpanExporter.export`` with the encoding
    replaced: the same steps around it, on the same private attributes."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    def message(assumption: str) -> str:
        return (
            f"opentelemetry-exporter-otlp-proto-http {version('opentelemetry-exporter-otlp-proto-http')}: "
            f"datasvc/otlp.py assumes {assumption} (a private API: see the pin in pyproject.toml)"
        )

    source = inspect.getsource(OTLPSpanExporter.export)
    for step in (
        "if self._shutdown:",
        "with self._metrics.export_operation(len(spans)) as result:",
        "serialized_data = encode_spans(spans).SerializePartialToString()",
        "_is_request_too_large(serialized_data, self._max_request_size)",
        "export_result = self._client.export(serialized_data)",
        "result.error = export_result.error",
        "export_result.status_code",
        "return SpanExportResult.SUCCESS",
    ):
        assert step in source, message(f"OTLPSpanExporter.export does `{step}`")
    exporter = OTLPSpanExporter(endpoint="http://127.0.0.1:9/v1/traces")
    for name in ("_shutdown", "_metrics", "_max_request_size", "_client"):
        assert hasattr(exporter, name), message(f"OTLPSpanExporter has .{name}")
    exporter.shutdown()
