"""Prometheus metrics: HTTP requests by route template, statements by registry name, the pool.

One `Metrics` per app, with its own ``CollectorRegistry`` (no process-global state): `create_app` makes it,
`request_observer` records each request (called by the request middleware, which already holds its
clock and status), `datasvc.db` reports each statement and each pool acquire, and
``GET /metrics`` renders it. The pool's size, in-use, idle and waiting counts are read when scraped, so
they cost the request path nothing.

Labels are bounded: the route *template* (``/api/v1/users/{id}``, never the raw path; ``unmatched`` for
404s and requests shed before routing), the method, the status code, the statement name (from the
registry) and an error's SQLSTATE or exception class. With ``--workers N`` each worker process has its
own metrics: a scrape reaches one worker, chosen by the kernel; see docs/operations.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from datasvc.routing import Operation

if TYPE_CHECKING:
    import asyncpg

    from datasvc.limits import CallerLimit
    from datasvc.tokenfile import ReloadState

UNMATCHED = "unmatched"
# Point lookups take ~0.2-2 ms in the database; the tail we care about is 10 ms to a few seconds.
_QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ACQUIRE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class PoolSource(Protocol):
    """What the pool collector reads at scrape time (`datasvc.db.Database` provides it)."""

    pool: asyncpg.Pool
    waiting: int


class DropSource(Protocol):
    """What the access-log collector reads at scrape time (`datasvc.accesslog.AccessLog` provides it)."""

    @property
    def dropped(self) -> int: ...


class Metrics:
    """Every metric of one app; the hot-path methods are a dict lookup and an ``observe``."""

    def __init__(self, statement_names: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Histogram(
            "datasvc_http_request_duration_seconds",
            "HTTP requests (the _count is the request count) by route template, method and status.",
            ["route", "method", "status"],
            buckets=_REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.queries = Histogram(
            "datasvc_db_query_duration_seconds",
            "Statements run, by registry name: time from send to result, as seen by the service.",
            ["statement"],
            buckets=_QUERY_BUCKETS,
            registry=self.registry,
        )
        self.query_errors = Counter(
            "datasvc_db_query_errors",
            "Statements that raised, by registry name and SQLSTATE (or exception class when none).",
            ["statement", "error"],
            registry=self.registry,
        )
        self.acquire = Histogram(
            "datasvc_db_pool_acquire_seconds",
            "Time spent waiting for a pooled connection (including acquires that timed out).",
            buckets=_ACQUIRE_BUCKETS,
            registry=self.registry,
        )
        self._pool = _PoolCollector()
        self.registry.register(self._pool)
        self._auth = _AuthCollector()
        self.registry.register(self._auth)
        self._access_log = _AccessLogCollector()
        self.registry.register(self._access_log)
        # Children made up front for every known statement: the hot path then skips labels()' lock.
        self._query_children = {name: self.queries.labels(name) for name in statement_names}
        self._request_children: dict[tuple[str, str, int], Any] = {}

    def watch_pool(self, source: PoolSource | None) -> None:
        """Report this pool from now on (None: stop, e.g. after the lifespan closed it)."""
        self._pool.source = source

    def watch_auth(self, *, reloads: ReloadState | None = None, callers: CallerLimit | None = None) -> None:
        """Report the tokens file's reloads and the per-caller limit (read when scraped)."""
        self._auth.reloads = reloads
        self._auth.callers = callers

    def watch_access_log(self, source: DropSource | None) -> None:
        """Report the access log's dropped lines (read when scraped)."""
        self._access_log.source = source

    def request_observer(self, templates: Mapping[Any, str]) -> Callable[[Scope, int, float], None]:
        """What the request middleware calls once per request; ``templates`` maps endpoints to paths."""

        def observe(scope: Scope, status: int, seconds: float) -> None:
            # The router wrote the matched route's endpoint into this same scope dict.
            route = templates.get(scope.get("endpoint"), UNMATCHED)
            self.observe_request(route, scope["method"], status, seconds)

        return observe

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self._request_children[key] = self.requests.labels(route, method, str(status))
        child.observe(seconds)

    def observe_query(self, name: str, seconds: float) -> None:
        child = self._query_children.get(name)
        if child is None:
            child = self._query_children[name] = self.queries.labels(name)
        child.observe(seconds)

    def query_failed(self, name: str, exc: BaseException) -> None:
        self.query_errors.labels(name, getattr(exc, "sqlstate", None) or type(exc).__name__).inc()

    def observe_acquire(self, seconds: float) -> None:
        self.acquire.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _PoolCollector(Collector):
    def __init__(self) -> None:
        self.source: PoolSource | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # families only exist once a pool is watched

    def collect(self) -> Iterator[Metric]:
        source = self.source
        if source is None:
            return
        pool = source.pool
        size, idle = pool.get_size(), pool.get_idle_size()
        connections = GaugeMetricFamily(
            "datasvc_db_pool_connections", "Open pool connections by state.", labels=["state"]
        )
        connections.add_metric(["in_use"], size - idle)
        connections.add_metric(["idle"], idle)
        yield connections
        yield GaugeMetricFamily("datasvc_db_pool_size", "Open pool connections.", value=size)
        yield GaugeMetricFamily(
            "datasvc_db_pool_max", "Most connections the pool opens.", value=pool.get_max_size()
        )
        yield GaugeMetricFamily(
            "datasvc_db_pool_waiting", "Requests waiting for a pooled connection now.", value=source.waiting
        )


class _AuthCollector(Collector):
    def __init__(self) -> None:
        self.reloads: ReloadState | None = None
        self.callers: CallerLimit | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if (state := self.reloads) is not None:
            reloads = CounterMetricFamily(
                "datasvc_auth_tokens_reloads",
                "Changes of DATASVC_AUTH_TOKENS_FILE seen: applied, or refused (the last good set kept).",
                labels=["result"],
            )
            reloads.add_metric(["applied"], state.applied)
            reloads.add_metric(["refused"], state.failed)
            yield reloads
            yield GaugeMetricFamily(
                "datasvc_auth_tokens_reload_failing",
                "1 while the tokens file as it is now cannot be applied (alert on this).",
                value=int(state.failing),
            )
            yield GaugeMetricFamily("datasvc_auth_tokens", "Tokens accepted now.", value=state.tokens)
            if state.last_error is not None:
                last = GaugeMetricFamily(
                    "datasvc_auth_tokens_last_error_timestamp_seconds",
                    "When the tokens file was last refused, labelled with why.",
                    labels=["error"],
                )
                last.add_metric([state.last_error], state.last_error_at or 0.0)
                yield last
        if (callers := self.callers) is not None and callers.per_caller:
            limited = CounterMetricFamily(
                "datasvc_caller_limited",
                "Requests refused 429 because their caller had DATASVC_CALLER_MAX_IN_FLIGHT in flight.",
                labels=["caller"],
            )
            for name, count in sorted(callers.refused.items()):
                limited.add_metric([name], count)
            yield limited
            yield GaugeMetricFamily(
                "datasvc_caller_max_in_flight",
                "Requests one caller may have in flight (per worker).",
                value=callers.per_caller,
            )


class _AccessLogCollector(Collector):
    def __init__(self) -> None:
        self.source: DropSource | None = None

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        if self.source is not None:
            yield CounterMetricFamily(
                "datasvc_access_log_dropped",
                "Access-log lines dropped because stdout did not keep up (requests are never held for it).",
                value=self.source.dropped,
            )


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: this process's metrics in the Prometheus text format."""
    metrics: Metrics = request.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


METRICS_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/metrics",
        endpoint=metrics_endpoint,
        operation_id="metrics",
        summary="Prometheus metrics of the worker process that answers (text exposition format)",
        tag="ops",
    ),
)
