"""``create_app(settings)``: routes, middleware, error handlers, and a lifespan owning the pool."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from datasvc import consistency, docs, health, idempotency, openapi, pooler, preferences
from datasvc.accesslog import AccessLog
from datasvc.auth import Authenticator, env_entries
from datasvc.bodies import BodyReader
from datasvc.compression import GZipMiddleware
from datasvc.db import Database
from datasvc.dberrors import translate
from datasvc.drain import Drain
from datasvc.errors import BadRequest, ClientError, DatasvcError, MethodNotAllowed, NotFound
from datasvc.limits import CallerLimit, ConcurrencyLimitMiddleware, Slots, SlotsCollector
from datasvc.listener import Listener
from datasvc.liveness import Liveness
from datasvc.metrics import Metrics
from datasvc.middleware import RequestContextMiddleware
from datasvc.migrations import local_hashes
from datasvc.pagination import CursorCodec
from datasvc.privileges import warn_if_privileged
from datasvc.registry import Registry
from datasvc.replicas import ReplicaCollector
from datasvc.responses import JSONResponse, problem_response
from datasvc.routing import IndexedRouter, Operation, build_routes
from datasvc.settings import Settings, SettingsError
from datasvc.tokenfile import TokensFileWatcher
from datasvc.users import batches, changes, export, listing, retention
from datasvc.users import routes as users

log = logging.getLogger("datasvc.app")

HEALTH_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/health",
        endpoint=health.live,
        operation_id="health",
        summary="Liveness: the process answers (no database call)",
        description=(
            "200 as long as the process can answer; it never touches the database, so a database "
            "outage does not get the process restarted."
        ),
        tag="health",
        response_model=health.Live,
    ),
    Operation(
        method="GET",
        path="/health/ready",
        endpoint=health.ready,
        operation_id="ready",
        summary="Readiness: not shutting down, the database answers and every migration is applied",
        description=(
            "503 while draining, while the database does not answer, or while a migration this code "
            "needs is not applied; the body says which. Migration drift is reported without failing."
        ),
        tag="health",
        response_model=health.Ready,
        errors=(503,),
    ),
)


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the metrics of every worker process, in the Prometheus text format."""
    metrics: Metrics = request.scope["state"]["metrics"]
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


METRICS_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/metrics",
        endpoint=metrics_endpoint,
        operation_id="metrics",
        summary="Prometheus metrics of the whole service process group (text exposition format)",
        description=(
            "Request, database, pool and shedding metrics of every worker process, for a Prometheus scrape."
        ),
        tag="ops",
        media_type="text/plain",
    ),
)


def operations() -> tuple[Operation, ...]:
    return (
        *users.OPERATIONS,
        *batches.OPERATIONS,
        *listing.OPERATIONS,
        *changes.OPERATIONS,
        *export.OPERATIONS,
        *HEALTH_OPERATIONS,
        *METRICS_OPERATIONS,
    )


def wired(
    ops: Sequence[Operation], settings: Settings, *, after_write: Callable[[], object]
) -> tuple[Operation, ...]:
    """The operations with the features their declarations ask for, wrapped around their endpoints.

    ``Prefer: wait`` bounds the handler alone (`datasvc.preferences`); the consistency token is stamped
    after it (`datasvc.consistency`), so a write that committed is never answered 504 for the stamp; and
    ``after_write`` is told of every successful write (the change feed's wake-up).
    """
    bounded = [dataclasses.replace(op, endpoint=preferences.bounded(op.endpoint)) for op in ops]
    return consistency.apply(bounded, replicas=bool(settings.replicas), after_write=after_write)


def create_app(
    settings: Settings, *, registry: Registry | None = None, take_sigterm: bool = False
) -> Starlette:
    """Build the ASGI app; the SQL registry is loaded now, so a bad statement file stops start-up.

    ``take_sigterm`` (`datasvc serve`): SIGTERM begins the drain window before the server stops.
    """
    registry = registry if registry is not None else Registry.load(settings.sql_dir)
    # Without a configured secret, cursors verify only in this process; `datasvc serve` shares one.
    cursor_secret = settings.cursor_secret or secrets.token_urlsafe(32)
    settings = settings.with_overrides(cursor_secret=cursor_secret)
    migration_hashes = local_hashes(settings.migrations_dir)
    migration_ids = list(migration_hashes)
    ops = operations()
    authenticator = Authenticator.from_settings(settings)
    watcher = None
    if settings.auth_tokens_file is not None:
        watcher = TokensFileWatcher(
            authenticator,
            settings.auth_tokens_file,
            fixed=env_entries(settings),
            interval=settings.auth_reload_seconds,
        )
    callers = CallerLimit(settings.caller_limit if authenticator.enabled else 0, authenticator.identify)
    document = openapi.build(ops)
    metrics = Metrics(registry)
    if watcher is not None:
        metrics.register(watcher.state)  # each worker reloads the file on its own
    metrics.register(callers)  # a caller's share is per worker
    # The access line is an INFO line: DATASVC_LOG_LEVEL=warning silences it as it did under `logging`.
    access_log = None
    if settings.access_log and settings.log_level.lower() in ("debug", "info"):
        access_log = AccessLog(interval=settings.access_log_flush)
        metrics.register(access_log, shared=True)
    cursors = CursorCodec(cursor_secret.encode())
    drain = Drain(settings.drain_seconds)
    # Shared by the limit middleware and the HTTP protocol.
    slots = Slots(settings.max_in_flight, at_parse=not callers.per_caller)
    metrics.register(SlotsCollector(slots))
    # `GET /health`, answered by the HTTP protocol (never behind the app), counted like the app's answers.
    liveness = Liveness(metrics.requests("/health", "GET", "200"))
    listener = Listener(settings, registry)

    # Rendered once: the document is fixed for the life of the app, and anyone may ask for it (no token),
    # as often as they like (pipelined by the hundred, never read: issue 21.3).
    rendered = JSONResponse(document).body

    async def openapi_json(request: Request) -> Response:
        return Response(rendered, media_type="application/json")

    routes = [
        *build_routes(wired(ops, settings, after_write=listener.nudge), guard=authenticator.authorize),
        Route("/openapi.json", openapi_json, methods=["GET"]),
        *docs.routes(),
    ]
    templates = {r.endpoint: r.path_format for r in routes}
    tracing = None
    if settings.tracing:
        try:  # only when on: the SDK stays unloaded otherwise
            from datasvc.spanexport import SpanCollector
            from datasvc.tracing import Tracing
        except ImportError as exc:
            raise SettingsError(
                f"tracing is configured (OTEL_*) but OpenTelemetry is not installed ({exc.name}): "
                "install datasvc[tracing]"
            ) from None
        tracing = Tracing.create(settings, templates)
        metrics.register(SpanCollector(tracing.processor), shared=True)  # every worker's drops

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        authenticator.log_mode()
        db = await Database.connect(settings, registry, metrics)
        if settings.pool_mode == "transaction":
            try:
                await pooler.check(db)  # before serving: no session state means the role must be right
            except BaseException:
                await db.close()
                raise
        metrics.register(db.collector, shared=True)
        if db.replicas:
            metrics.register(ReplicaCollector(db.replicas))
        if take_sigterm:
            drain.take_sigterm()
        listener.start()
        background = [
            asyncio.create_task(warn_if_privileged(db)),
            asyncio.create_task(retention.purge_forever(db, settings.changes_retention)),
            asyncio.create_task(idempotency.purge_forever(db)),
        ]
        if watcher is not None:
            background.append(asyncio.create_task(watcher.run()))
        try:
            async with metrics.running():
                yield {
                    "db": db,
                    "migration_ids": migration_ids,
                    "migration_hashes": migration_hashes,
                    "metrics": metrics,
                    "settings": settings,
                    "cursors": cursors,
                    "drain": drain,
                    "slots": slots,
                    "liveness": liveness,
                    "listener": listener,
                    "exports": export.Exports(),
                }
        finally:
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            metrics.unregister(db.collector)
            await listener.close()
            await db.close()
            if tracing is not None:
                tracing.close(settings.shutdown_timeout)
            if access_log is not None:
                # After uvicorn let in-flight requests finish (SIGTERM included): their lines are queued.
                access_log.close()

    app = Starlette(
        middleware=[
            Middleware(
                RequestContextMiddleware,
                max_body_bytes=settings.max_body_bytes,
                access_log=access_log,
                observe=metrics.request_observer(templates),
                on_client_closed=functools.partial(metrics.count_closed, "client-closed"),
                tracing=tracing,
            ),
            # Large answers gzipped for callers that accept it (never one with an ETag: compression.py).
            Middleware(GZipMiddleware),
            # Inside the request context, so a shed request still has an id and an access-log line. The
            # body is read whole before a slot is taken: a slow upload holds none (datasvc.bodies).
            Middleware(
                ConcurrencyLimitMiddleware,
                max_in_flight=settings.max_in_flight,
                callers=callers,
                slots=slots,
                bodies=BodyReader(
                    timeout=settings.body_timeout,
                    on_timeout=functools.partial(metrics.count_closed, "body-timeout"),
                ),
            ),
        ],
        exception_handlers=_exception_handlers(),
    )
    # The routes and the lifespan, in a router that finds a route without trying every pattern. No
    # redirects: Starlette would answer `/api/v1/users/3/` with a 307 to a URL built from the Host header
    # (an open redirect through a cache or proxy). The documented trailing-slash forms are routes of
    # their own (`Operation.aliases`); any other path is a 404 problem.
    app.router = IndexedRouter(routes, lifespan=lifespan)
    app.state.access_log = access_log  # for tests and operators' tooling: flush(), dropped
    app.state.tracing = tracing  # None when tracing is off; for tests and tooling: close(), dropped
    return app


def _exception_handlers() -> dict[Any, Any]:
    async def on_http_exception(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error: DatasvcError
        if exc.status_code == 404:
            error = NotFound(f"no route matches {request.url.path}")
        elif exc.status_code == 405:
            allow: Sequence[str] = (exc.headers or {}).get("Allow", "").replace(" ", "").split(",")
            error = MethodNotAllowed(allow, f"{request.method} is not allowed here")
        elif 400 <= exc.status_code < 500:
            error = BadRequest(exc.detail)
            error.status = exc.status_code
        else:
            error = translate(exc)
        return _problem(request, error)

    async def on_error(request: Request, exc: Exception) -> Response:
        error = translate(exc)
        if not isinstance(error, ClientError) and error is not exc:
            # Log the class and SQLSTATE only: driver messages can quote row values.
            log.warning(
                "request failed",
                extra={
                    "request_id": request.scope.get("state", {}).get("request_id"),
                    "error": type(exc).__name__,
                    "sqlstate": getattr(exc, "sqlstate", None),
                    "problem": error.slug,
                },
            )
        return _problem(request, error)

    return {
        HTTPException: on_http_exception,
        DatasvcError: on_error,
        asyncpg.PostgresError: on_error,
        asyncpg.InterfaceError: on_error,
        asyncpg.InternalClientError: on_error,
        OSError: on_error,
    }


def _problem(request: Request, error: DatasvcError) -> Response:
    return problem_response(
        error, instance=request.url.path, request_id=request.scope.get("state", {}).get("request_id")
    )
