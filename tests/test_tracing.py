"""OpenTelemetry traces end to end: a real OTLP/HTTP receiver, the SDK's own exporter, a real PostgreSQL.

A caller's ``traceparent`` makes our SERVER span its child, each statement a CLIENT span under it named by
its registry name, and the same trace id shows in the access log and in PostgreSQL's view of the statement
(the sqlcommenter comment, sampled requests only). Unsampled requests send the registry text unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx2
import orjson
import pytest

from datasvc.context import Timing, request_timing
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT, Settings, SettingsError
from datasvc.statements import execute
from tests.support.faultproxy import FaultProxy
from tests.support.load import ADMIN_NAME, admin
from tests.support.otlp import ReceivedSpan, Receiver, SilentCollector
from tests.support.servers import ProcessServer, ThreadServer
from tests.support.values import HASH
from tests.support.waits import until, until_blocking

SERVER, CLIENT = 2, 3  # opentelemetry.proto.trace.v1.Span.SpanKind
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
PLANS = Registry.load(Path(__file__).parent / "sql" / "plans")


def _traceparent(trace_id: str, span_id: str, sampled: bool) -> str:
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}"


def _create(base_url: str, name: str) -> int:
    body = {"email": f"{name}@example.org", "username": name, "hashed_password": HASH}
    response = httpx2.post(base_url + "/api/v1/users", json=body)
    assert response.status_code == 201, response.text
    user_id: int = response.json()["id"]
    return user_id


def _access_lines(path: Path) -> list[dict[str, Any]]:
    lines = [orjson.loads(line) for line in path.read_text().splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("logger") == "datasvc.access" and line["path"] != "/health"]


async def _postgres_saw(database_url: str, needle: str) -> list[str]:
    async with admin(database_url) as conn:
        rows = await conn.run("tracing.statements_containing", needle)
    return [row["query"] for row in rows]


@contextmanager
def _traced_server(settings: Settings, log_path: Path) -> Iterator[tuple[Receiver, str, int]]:
    """A `datasvc serve` exporting to a receiver of the test's, its access log in ``log_path``, a user."""
    with Receiver() as receiver:
        traced = settings.with_overrides(otel_exporter_otlp_endpoint=receiver.endpoint)
        with ProcessServer(traced, log_path, access_log=True) as server:
            yield receiver, server.base_url, _create(server.base_url, "ada")


def _get_user(base_url: str, user_id: int, trace_id: str, *, sampled: bool) -> None:
    header = {"traceparent": _traceparent(trace_id, CALLER_SPAN, sampled)}
    assert httpx2.get(f"{base_url}/api/v1/users/{user_id}", headers=header).status_code == 200


async def test_a_callers_trace_reaches_our_statement_and_postgresql(settings: Settings, tmp_path) -> None:
    log_path = tmp_path / "serve.log"
    with _traced_server(settings, log_path) as (receiver, base_url, user_id):
        _get_user(base_url, user_id, CALLER_TRACE, sampled=True)
        spans = receiver.wait_for(
            lambda spans: any(s.trace_id == CALLER_TRACE and s.kind == CLIENT for s in spans)
        )
        seen = await _postgres_saw(settings.database_url or "", CALLER_TRACE)
        until_blocking(
            lambda: any(line.get("trace_id") == CALLER_TRACE for line in _access_lines(log_path)),
            what="the access-log line of the traced request",
        )
    mine = [s for s in spans if s.trace_id == CALLER_TRACE]
    (server_span,) = [s for s in mine if s.kind == SERVER]
    (statement,) = [s for s in mine if s.kind == CLIENT]
    # The server span is the caller's span's child, the statement span the server span's.
    assert server_span.parent_span_id == CALLER_SPAN
    assert statement.parent_span_id == server_span.span_id
    assert server_span.name == "GET /api/v1/users/{id}"
    assert server_span.attributes == {
        "http.request.method": "GET",
        "http.route": "/api/v1/users/{id}",  # the template: never the concrete path
        "http.response.status_code": 200,
        "url.scheme": "http",
    }
    assert server_span.resource["service.name"] == "datasvc"
    wait = [attrs for name, attrs in server_span.events if name == "db.client.connection.wait"]
    assert len(wait) == 1
    assert wait[0]["datasvc.db.target"] == "primary"
    assert wait[0]["db.client.connection.wait_time"] >= 0
    assert statement.name == "users.get_by_id"
    database = (settings.database_url or "").rsplit("/", 1)[1]
    assert statement.attributes == {
        "db.system.name": "postgresql",
        "db.query.summary": "users.get_by_id",
        "db.namespace": database,
        "server.address": "127.0.0.1",
        "server.port": 5432,
        "datasvc.db.target": "primary",
    }
    # PostgreSQL saw the statement with the statement span as the traceparent's parent.
    assert seen == [
        f"/* users.get_by_id */ /*traceparent='00-{CALLER_TRACE}-{statement.span_id}-01'*/ "
        + Registry.load(settings.sql_dir)["users.get_by_id"].sql
    ]
    # The access log names the same trace and our server span.
    (line,) = [line for line in _access_lines(log_path) if line.get("trace_id") == CALLER_TRACE]
    assert line["span_id"] == server_span.span_id
    # The request without a traceparent started a trace of its own (sampled: the default is always on).
    (create_line,) = [line for line in _access_lines(log_path) if line["method"] == "POST"]
    assert create_line["trace_id"] != CALLER_TRACE
    assert any(s.trace_id == create_line["trace_id"] and s.name == "users.create" for s in spans)


async def test_an_unsampled_request_sends_the_statement_unchanged(settings: Settings, tmp_path) -> None:
    log_path = tmp_path / "serve.log"
    plain = Registry.load(settings.sql_dir)["users.get_by_id"].text
    with _traced_server(settings, log_path) as (receiver, base_url, user_id):
        _get_user(base_url, user_id, CALLER_TRACE, sampled=False)
        async with admin(settings.database_url or "") as conn:
            queries = [row["query"] for row in await conn.run("tracing.service_statements", ADMIN_NAME)]
        # A sampled request after it: once its spans have arrived, the unsampled one's would have too.
        _get_user(base_url, user_id, "1" * 32, sampled=True)
        spans = receiver.wait_for(lambda spans: any(s.trace_id == "1" * 32 for s in spans))
        until_blocking(lambda: len(_access_lines(log_path)) == 3, what="three access-log lines")
    assert plain in queries  # as the registry has it: no comment
    assert not any(CALLER_TRACE in q for q in queries)  # (the create before it was sampled: it has one)
    assert not [s for s in spans if s.trace_id == CALLER_TRACE]
    assert not any(CALLER_TRACE in q for q in queries)
    # The log still joins the caller's trace: the span exists, unsampled.
    (line,) = [line for line in _access_lines(log_path) if line.get("trace_id") == CALLER_TRACE]
    assert len(line["span_id"]) == 16


@pytest.fixture
async def conn(database_url: str) -> Any:
    connection = await asyncpg.connect(database_url)
    yield connection
    await connection.close()


def _request_trace(sampled: bool) -> tuple[Any, Any, Any]:
    """A request's trace as the middleware makes it, its spans exported to memory."""
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from datasvc.tracing import Tracing

    exporter = InMemorySpanExporter()
    tracing = Tracing.create(Settings(otel_traces_exporter="otlp"), {}, exporter=exporter)
    traceparent = _traceparent(CALLER_TRACE, CALLER_SPAN, sampled).encode()
    return tracing, tracing.start({"method": "GET", "headers": [(b"traceparent", traceparent)]}), exporter


@pytest.mark.parametrize("sampled", [False, True], ids=["unsampled", "sampled"])
async def test_unsampled_statements_keep_their_generic_plan(conn, sampled: bool) -> None:
    """Unsampled, a lookup is asyncpg's named statement: from the sixth execution on, a generic plan.
    Sampled, every execution is a one-off unnamed statement with a span: nothing is left prepared."""
    stmt = Registry.load(Settings().sql_dir)["users.get_by_id"]
    tracing, trace, exporter = _request_trace(sampled)
    token = request_timing.set(Timing(trace=trace))
    try:
        for _ in range(7):
            await execute(conn, stmt, (5,))
    finally:
        request_timing.reset(token)
    counts = await execute(conn, PLANS["prepared.plan_counts"], (stmt.text,))
    tracing.close(5.0)
    spans = exporter.get_finished_spans()
    if sampled:
        assert counts is None
        assert [s.name for s in spans] == ["users.get_by_id"] * 7
        assert len({s.context.span_id for s in spans}) == 7
    else:
        assert (counts["custom_plans"], counts["generic_plans"]) == (5, 2)
        assert spans == ()


def test_off_means_the_sdk_is_never_imported(database_url: str) -> None:
    script = (
        "import sys\n"
        "from starlette.testclient import TestClient\n"
        "from datasvc.app import create_app\n"
        "from datasvc.settings import Settings\n"
        "with TestClient(create_app(Settings.from_env())) as client:\n"
        "    assert client.get('/api/v1/users/1').status_code == 404\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "DATASVC_"))}
    env["DATABASE_URL"] = database_url
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.splitlines()[-1] == "[]"


@pytest.mark.parametrize(
    ("env", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, False),
        ({"OTEL_SERVICE_NAME": "users-api"}, False),
    ],
    ids=["unset", "endpoint", "traces-endpoint", "exporter-otlp", "exporter-none", "service-name-only"],
)
def test_tracing_is_on_only_when_configured_the_standard_way(env: dict[str, str], on: bool) -> None:
    assert Settings.from_env(env).tracing is on


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, "OTEL_EXPORTER_OTLP_ENDPOINT='collector:4317'"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "must be otlp or none"),
    ],
    ids=["not-a-url", "other-exporter"],
)
def test_a_tracing_setting_it_cannot_use_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def _metric(base_url: str, sample: str) -> float:
    for line in httpx2.get(base_url + "/metrics").text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_a_collector_that_never_answers_costs_requests_nothing(
    settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A queue of 8 spans exported 4 at a time, each export waiting 30 s for an answer that never comes.
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "8")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "10")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TIMEOUT", "30")
    with SilentCollector() as collector:
        traced = settings.with_overrides(
            otel_exporter_otlp_endpoint=collector.endpoint, shutdown_timeout=2.0, drain_seconds=0.0
        )
        server = ProcessServer(traced, tmp_path / "serve.log")
        server.start()
        try:
            user_id = _create(server.base_url, "ada")
            with httpx2.Client(base_url=server.base_url, timeout=5.0) as client:
                # 5 s each: were a request to wait on the export, it would wait its 30 s and time out here.
                statuses = [client.get(f"/api/v1/users/{user_id}").status_code for _ in range(40)]
            assert statuses == [200] * 40
            until_blocking(lambda: bool(collector.accepted), what="the exporter connecting to the collector")
            dropped = 'datasvc_trace_spans_dropped_total{reason="queue_full"}'
            assert _metric(server.base_url, dropped) >= 40 * 2 - 8 - 4 * 2  # beyond the queue and two batches
            server.signal(signal.SIGTERM)
            # The flush is given DATASVC_SHUTDOWN_TIMEOUT (2 s), not the export's 30 s: gone well before.
            assert server.wait(20) == 0
        finally:
            server.kill()
    assert "spans not flushed within the shutdown timeout" in (tmp_path / "serve.log").read_text()


def test_shutdown_flushes_the_spans_still_queued(
    settings: Settings, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "600000")  # nothing leaves on the timer: only the flush
    with Receiver() as receiver:
        traced = settings.with_overrides(otel_exporter_otlp_endpoint=receiver.endpoint, drain_seconds=0.0)
        server = ProcessServer(traced, tmp_path / "serve.log")
        server.start()
        try:
            _create(server.base_url, "ada")
            server.signal(signal.SIGTERM)
            assert server.wait(20) == 0
        finally:
            server.kill()
        assert "users.create" in [s.name for s in receiver.spans if s.kind == CLIENT]


async def test_a_statement_run_again_shows_both_attempts(settings: Settings, database_url: str) -> None:
    """A lookup (``retry: safe``) whose connection is reset under it runs again on a fresh one: two spans."""
    retried = "7" * 32
    with FaultProxy() as proxy, Receiver() as receiver:
        traced = settings.with_overrides(
            database_url=proxy.url_for(database_url), otel_exporter_otlp_endpoint=receiver.endpoint
        )
        with ThreadServer(traced) as server:
            base_url = server.base_url
            user_id = _create(base_url, "ada")
            # The lookup's Parse carries its whole text: more than the change feed's pings ever hold.
            lookup_bytes = len(Registry.load(settings.sql_dir)["users.get_by_id"].sql)
            proxy.set_mode("stall")
            pending = asyncio.create_task(
                asyncio.to_thread(_get_user, base_url, user_id, retried, sampled=True)
            )
            await until(lambda: proxy.held >= lookup_bytes, what="the lookup held by the stalled network")
            proxy.reset_now()  # the connection dies under the statement
            proxy.set_mode("pass")
            await pending  # 200: answered by the second attempt
            spans = receiver.wait_for(
                lambda got: any(s.trace_id == retried and s.kind == SERVER for s in got)
            )
    attempts = [s for s in spans if s.trace_id == retried and s.kind == CLIENT]
    assert [s.name for s in attempts] == ["users.get_by_id", "users.get_by_id"]
    failed, answered = attempts  # in the order they ended
    assert failed.status_code == 2  # ERROR
    assert "error.type" in failed.attributes
    assert answered.status_code == 0
    assert "error.type" not in answered.attributes
    (server_span,) = [s for s in spans if s.trace_id == retried and s.kind == SERVER]
    assert {failed.parent_span_id, answered.parent_span_id} == {server_span.span_id}
    assert server_span.attributes["http.response.status_code"] == 200


def _status(span: ReceivedSpan) -> int:
    status: int = span.attributes["http.response.status_code"]
    return status


async def test_errors_carry_their_sqlstate_and_a_5xx_its_error_type(
    settings: Settings, database_url: str
) -> None:
    with Receiver() as receiver:
        traced = settings.with_overrides(otel_exporter_otlp_endpoint=receiver.endpoint, lock_timeout=0.2)
        with ThreadServer(traced) as server:
            base_url = server.base_url
            user_id = _create(base_url, "ada")
            body = {"email": "ada@example.org", "username": "ada", "hashed_password": HASH}
            duplicate = httpx2.post(base_url + "/api/v1/users", json=body)
            async with admin(database_url) as conn, conn.conn.transaction():
                await conn.run("faults.lock_user", user_id)  # the PATCH waits for this lock past lock_timeout
                locked = await asyncio.to_thread(
                    httpx2.patch, f"{base_url}/api/v1/users/{user_id}", json={"bio": "x"}
                )
            spans = receiver.wait_for(
                lambda got: (
                    sum(s.kind == SERVER and s.attributes["http.response.status_code"] >= 400 for s in got)
                    == 2
                )
            )
    assert (duplicate.status_code, locked.status_code) == (409, 503)
    (conflict,) = [s for s in spans if s.kind == SERVER and s.attributes["http.response.status_code"] == 409]
    (unavailable,) = [
        s for s in spans if s.kind == SERVER and s.attributes["http.response.status_code"] == 503
    ]
    # A 4xx is the caller's error: no error.type, status unset. A 5xx is ours.
    assert "error.type" not in conflict.attributes
    assert conflict.status_code == 0
    assert unavailable.attributes["error.type"] == "503"
    assert unavailable.status_code == 2
    (insert,) = [s for s in spans if s.parent_span_id == conflict.span_id]
    assert (insert.name, insert.attributes["db.response.status_code"]) == ("users.create", "23505")
    assert insert.attributes["error.type"] == "23505"
    (update,) = [s for s in spans if s.parent_span_id == unavailable.span_id and s.name.startswith("users.")]
    assert update.attributes["db.response.status_code"] == "55P03"  # lock_not_available


async def test_the_caller_is_named_on_the_server_span(settings: Settings) -> None:
    token = "tracing-token"
    entry = f"billing users:read,users:write {hashlib.sha256(token.encode()).hexdigest()}"
    with Receiver() as receiver:
        traced = settings.with_overrides(otel_exporter_otlp_endpoint=receiver.endpoint, auth_tokens=entry)
        with ThreadServer(traced) as server:
            base_url = server.base_url
            answer = httpx2.get(base_url + "/api/v1/users/1", headers={"authorization": f"Bearer {token}"})
            spans = receiver.wait_for(lambda got: any(s.kind == SERVER for s in got))
    assert answer.status_code == 404
    (server_span,) = [s for s in spans if s.kind == SERVER]
    assert server_span.attributes["enduser.id"] == "billing"


@pytest.mark.parametrize(
    ("name", "arg"),
    [
        ("parentbased_always_on", None),
        ("parentbased_always_off", None),
        ("parentbased_traceidratio", "0.25"),
        ("traceidratio", "0.25"),
        ("always_on", None),
        ("always_off", None),
        ("parentbased_traceidratio", "not a number"),  # the SDK's fallback: 1.0
        ("no_such_sampler", None),  # the SDK's fallback: parentbased_always_on
    ],
)
def test_the_sampling_rule_decides_as_the_sdks_sampler(name: str, arg: str | None) -> None:
    """The decision made before any SDK object (datasvc.tracing._Rule) is the SDK sampler's own, for the
    sampler the same variables make in the SDK, with and without a sampled or unsampled remote parent."""
    import random

    from opentelemetry.sdk.trace import sampling
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, set_span_in_context

    from datasvc.tracing import _Rule

    env = {"OTEL_TRACES_SAMPLER": name} | ({"OTEL_TRACES_SAMPLER_ARG": arg} if arg is not None else {})
    rule = _Rule(env)
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        sdk = sampling._get_from_env_or_default()  # what TracerProvider() would build from them
    rng = random.Random(24)
    for _ in range(400):
        trace_id = rng.getrandbits(128) or 1
        for flags in (None, TraceFlags.SAMPLED, TraceFlags.DEFAULT):
            parent = None
            if flags is not None:
                parent = SpanContext(trace_id, rng.getrandbits(64) or 1, True, TraceFlags(flags))
            context = set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
            expected = sdk.should_sample(context, trace_id, "GET").decision.is_sampled()
            assert rule.sampled(trace_id, parent) is expected, (name, arg, trace_id, flags)
            assert rule.sampler.get_description() == sdk.get_description()
