"""Prometheus metrics: HTTP requests by route template, statements by registry name, the pool.

One `Metrics` per app, with its own ``CollectorRegistry`` (no process-global state): `create_app` makes it,
`request_observer` records each request (called by the request middleware, which already holds its
clock and status), `datasvc.db` reports each statement and each pool acquire, and
``GET /metrics`` renders it. The pool's size, in-use, idle and waiting counts are read when scraped, so
they cost the request path nothing.

Labels are bounded: the route *template* (``/api/v1/users/{id}``, never the raw path; ``unmatched`` for
404s and requests shed before routing), the method, the status code, the statement name (from the
registry), an error's SQLSTATE or exception class, and the ``target`` that ran a statement or owns a pool:
``primary`` or ``replica`` (the pools of all replicas summed; ``/health/ready`` has each one's state).

With ``datasvc serve --workers N`` a scrape reaches one worker, chosen by the kernel, and must still report
the whole process group: serve then sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory per run) before
the workers start, prometheus-client keeps every value in files there, and the worker that answers a
scrape reads them all (`_ProcessGroup`): counters and histograms summed over the workers, dead ones
included; the pool gauges summed over the live ones, each worker copying its pool's numbers there every
second and when it answers a scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from datasvc.routing import Operation

if TYPE_CHECKING:
    from datasvc.limits import CallerLimit
    from datasvc.replicas import Target
    from datasvc.tokenfile import ReloadState

UNMATCHED = "unmatched"
CLOSED_REASONS = (
    "client-closed",
    "body-timeout",
    "head-timeout",
    "send-timeout",
    "too-many-connections",
    "too-many-pipelined",
)
# Point lookups take ~0.2-2 ms in the database; the tail we care about is 10 ms to a few seconds.
_QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ACQUIRE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SAMPLE_EVERY = 1.0  # seconds between two copies of a worker's pool numbers into the shared files

_HELP = {
    "datasvc_db_pool_connections": "Open pool connections by state.",
    "datasvc_db_pool_size": "Open pool connections.",
    "datasvc_db_pool_max": "Most connections the pool opens.",
    "datasvc_db_pool_waiting": "Requests waiting for a pooled connection now.",
    "datasvc_access_log_dropped": (
        "Access-log lines dropped because stdout did not keep up (requests are never held for it)."
    ),
}


def multiprocess_dir() -> str | None:
    """The shared directory when prometheus-client runs in multiprocess mode in this process, else None.

    prometheus-client chooses its mode once, at import, from ``PROMETHEUS_MULTIPROC_DIR``: read it the same
    way, and only when the library really made that choice.
    """
    if not getattr(values.ValueClass, "_multiprocess", False):
        return None
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


class PoolSource(Protocol):
    """What the pool collector reads at scrape time (`datasvc.db.Database` provides it)."""

    def targets(self) -> list[Target]: ...


def _pool_numbers(source: PoolSource) -> dict[str, tuple[int, int, int, int]]:
    """Per target kind (primary, replica): open, idle, most and waiting connections, replicas summed."""
    out: dict[str, tuple[int, int, int, int]] = {}
    for target in source.targets():
        pool = target.pool
        # Idle: in the pool, or parked at the gate for the next request (`datasvc.gate`).
        idle = pool.get_idle_size() + target.gate.parked
        numbers = (pool.get_size(), idle, pool.get_max_size(), target.waiting)
        before = out.get(target.kind, (0, 0, 0, 0))
        out[target.kind] = tuple(a + b for a, b in zip(before, numbers, strict=True))
    return out


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
            ["statement", "target"],
            buckets=_QUERY_BUCKETS,
            registry=self.registry,
        )
        self.query_errors = Counter(
            "datasvc_db_query_errors",
            "Statements that raised, by registry name and SQLSTATE (or exception class when none).",
            ["statement", "error", "target"],
            registry=self.registry,
        )
        self.problems = Counter(
            "datasvc_http_problems",
            "Problem answers by type (the problem type's last path segment, docs/api.md) and status.",
            ["type", "status"],
            registry=self.registry,
        )
        self.acquire = Histogram(
            "datasvc_db_pool_acquire_seconds",
            "Time spent waiting for a pooled connection (including acquires that timed out).",
            ["target"],
            buckets=_ACQUIRE_BUCKETS,
            registry=self.registry,
        )
        self.closed = Counter(
            "datasvc_http_closed",
            "Requests and connections ended early, by reason: client-closed (the caller closed its "
            "connection mid-request), body-timeout (408), head-timeout, send-timeout (the caller did not "
            "read its answer), too-many-connections, too-many-pipelined.",
            ["reason"],
            registry=self.registry,
        )
        self._closed = {reason: self.closed.labels(reason) for reason in CLOSED_REASONS}
        self._pool = _PoolCollector()
        self._access_log = _AccessLogCollector()
        self._auth = _AuthCollector()
        # This worker's own view, rendered after the group's: the tokens file it reloaded, the callers it
        # refused (every worker reads the same file; a caller's share is per worker anyway).
        self._worker = CollectorRegistry(auto_describe=True)
        shared = multiprocess_dir()
        self.group = _ProcessGroup(shared) if shared else None
        if self.group is None:  # one process: read at scrape time
            self.registry.register(self._pool)
            self.registry.register(self._access_log)
            self.registry.register(self._auth)
        else:
            self._worker.register(self._auth)
        # One worker: observations are tallied in plain lists and handed to prometheus-client when scraped
        # (`_Tally`). A process group: other workers' scrapes read the shared files, so observe at once.
        self._tallies: list[_Tally] = []
        # Made up front for every known statement and pool: the hot path is then one dict lookup.
        self._query_observers = {
            (n, "primary"): self._observer(self.queries.labels(n, "primary")) for n in statement_names
        }
        self._acquire_observers = {k: self._observer(self.acquire.labels(k)) for k in ("primary", "replica")}
        self._request_observers: dict[tuple[str, str, int], Callable[[float], None]] = {}

    def _observer(self, child: Histogram) -> Callable[[float], None]:
        if self.group is not None:
            return child.observe
        tally = _Tally(child)
        self._tallies.append(tally)
        return tally.observe

    def count_closed(self, reason: str) -> None:
        """One request or connection ended early for ``reason`` (one of `CLOSED_REASONS`)."""
        self._closed[reason].inc()

    def register(self, collector: Collector) -> None:
        """A feature's own collector, read when scraped (with ``--workers N``: the answering worker's)."""
        (self.registry if self.group is None else self._worker).register(collector)

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

        # By (endpoint, method, status): the observer of the histogram child those labels name.
        observers: dict[tuple[Any, str, int], Callable[[float], None]] = {}

        def observe(scope: Scope, status: int, seconds: float) -> None:
            # The router wrote the matched route's endpoint into this same scope dict.
            key = (scope.get("endpoint"), scope["method"], status)
            observer = observers.get(key)
            if observer is None:
                observer = observers[key] = self._request_observer(templates.get(key[0], UNMATCHED), *key[1:])
            observer(seconds)
            if status >= 400 and (problem := scope.get("state", {}).get("problem")) is not None:
                self.problems.labels(problem, str(status)).inc()

        return observe

    def _request_observer(self, route: str, method: str, status: int) -> Callable[[float], None]:
        key = (route, method, status)
        observe = self._request_observers.get(key)
        if observe is None:
            observe = self._request_observers[key] = self._observer(
                self.requests.labels(route, method, str(status))
            )
        return observe

    def observe_query(self, name: str, seconds: float, target: str = "primary") -> None:
        observe = self._query_observers.get((name, target))
        if observe is None:
            observe = self._query_observers[name, target] = self._observer(self.queries.labels(name, target))
        observe(seconds)

    def query_failed(self, name: str, exc: BaseException, target: str = "primary") -> None:
        self.query_errors.labels(name, getattr(exc, "sqlstate", None) or type(exc).__name__, target).inc()

    def observe_acquire(self, seconds: float, target: str = "primary") -> None:
        self._acquire_observers[target](seconds)

    def render(self) -> bytes:
        if self.group is not None:
            self.group.sample(self._pool.source, self._access_log.source)
            return self.group.render() + generate_latest(self._worker)
        for tally in self._tallies:
            tally.flush()
        return generate_latest(self.registry)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """While the app serves: with a process group, copy this worker's gauges there every second."""
        if self.group is None:
            yield
            return
        group = self.group

        async def sample() -> None:
            while True:
                group.sample(self._pool.source, self._access_log.source)
                await asyncio.sleep(_SAMPLE_EVERY)

        task = asyncio.create_task(sample())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            group.leave()


class _Tally:
    """A histogram child's observations since the last scrape, counted in plain Python.

    prometheus-client's ``observe`` walks the buckets in a Python loop and takes a lock for the bucket and
    one for the sum: ~2 µs, three times per request (request, statement, acquire). Here an observation is
    one C ``bisect`` and two additions on the event loop's thread; `flush` (at scrape time, on the same
    thread, so nothing is ever counted twice or lost) adds what accumulated to the child, so a scrape
    shows exactly what ``observe`` would have. The bucket rule is prometheus-client's: the first upper
    bound ``>=`` the value (``le``), +Inf last.
    """

    __slots__ = ("_bounds", "_child", "_counts", "_sum")

    def __init__(self, child: Histogram) -> None:
        self._child = child
        self._bounds: list[float] = list(child._upper_bounds)
        self._counts = [0] * len(self._bounds)
        self._sum = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect_left(self._bounds, seconds)] += 1
        self._sum += seconds

    def flush(self) -> None:
        counts, self._counts = self._counts, [0] * len(self._bounds)
        total, self._sum = self._sum, 0.0
        buckets = self._child._buckets
        for i, count in enumerate(counts):
            if count:
                buckets[i].inc(count)
        if total:
            self._child._sum.inc(total)


class _ProcessGroup:
    """The metrics of every worker of one `datasvc serve`, in prometheus-client's shared files."""

    def __init__(self, path: str) -> None:
        self.path = path
        # Not in any registry: in multiprocess mode the files are the registry.
        live: dict[str, Any] = {"multiprocess_mode": "livesum", "registry": None}
        self.pool_connections = Gauge(
            "datasvc_db_pool_connections", _HELP["datasvc_db_pool_connections"], ["state", "target"], **live
        )
        self.pool_size = Gauge("datasvc_db_pool_size", _HELP["datasvc_db_pool_size"], ["target"], **live)
        self.pool_max = Gauge("datasvc_db_pool_max", _HELP["datasvc_db_pool_max"], ["target"], **live)
        self.pool_waiting = Gauge(
            "datasvc_db_pool_waiting", _HELP["datasvc_db_pool_waiting"], ["target"], **live
        )
        self.workers = Gauge("datasvc_workers", "Worker processes serving (with --workers N).", **live)
        self.workers.set(1)
        self.dropped = Counter(
            "datasvc_access_log_dropped", _HELP["datasvc_access_log_dropped"], registry=None
        )
        self._dropped_copied = 0

    def sample(self, pool_source: PoolSource | None, log_source: DropSource | None) -> None:
        if pool_source is not None:
            for kind, (size, idle, max_size, waiting) in _pool_numbers(pool_source).items():
                self.pool_connections.labels("in_use", kind).set(size - idle)
                self.pool_connections.labels("idle", kind).set(idle)
                self.pool_size.labels(kind).set(size)
                self.pool_max.labels(kind).set(max_size)
                self.pool_waiting.labels(kind).set(waiting)
        if log_source is not None:
            dropped = log_source.dropped
            if dropped > self._dropped_copied:
                self.dropped.inc(dropped - self._dropped_copied)
                self._dropped_copied = dropped

    def render(self) -> bytes:
        self._forget_dead_workers()
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.path)  # type: ignore[no-untyped-call]
        return generate_latest(registry)

    def leave(self) -> None:
        """This worker stops: its live gauges leave the sums (its counters stay in them)."""
        multiprocess.mark_process_dead(os.getpid(), self.path)  # type: ignore[no-untyped-call]

    def _forget_dead_workers(self) -> None:
        # A worker killed (-9, OOM) never called leave(): drop the live gauges of pids that are gone.
        pids = {os.path.basename(f).rpartition("_")[2][:-3] for f in glob.glob(f"{self.path}/gauge_live*.db")}
        for pid in pids:
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                multiprocess.mark_process_dead(int(pid), self.path)  # type: ignore[no-untyped-call]
            except (PermissionError, ValueError):
                pass


class _PoolCollector(Collector):
    def __init__(self) -> None:
        self.source: PoolSource | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # families only exist once a pool is watched

    def collect(self) -> Iterator[Metric]:
        source = self.source
        if source is None:
            return
        connections = GaugeMetricFamily(
            "datasvc_db_pool_connections", _HELP["datasvc_db_pool_connections"], labels=["state", "target"]
        )
        families = {
            name: GaugeMetricFamily(name, _HELP[name], labels=["target"])
            for name in ("datasvc_db_pool_size", "datasvc_db_pool_max", "datasvc_db_pool_waiting")
        }
        for kind, (size, idle, max_size, waiting) in _pool_numbers(source).items():
            connections.add_metric(["in_use", kind], size - idle)
            connections.add_metric(["idle", kind], idle)
            families["datasvc_db_pool_size"].add_metric([kind], size)
            families["datasvc_db_pool_max"].add_metric([kind], max_size)
            families["datasvc_db_pool_waiting"].add_metric([kind], waiting)
        yield connections
        yield from families.values()


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
                "datasvc_access_log_dropped", _HELP["datasvc_access_log_dropped"], value=self.source.dropped
            )


async def metrics_endpoint(request: Request) -> Response:
    """``GET /metrics``: the metrics of every worker process, in the Prometheus text format."""
    metrics: Metrics = request.state.metrics
    return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)


METRICS_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="GET",
        path="/metrics",
        endpoint=metrics_endpoint,
        operation_id="metrics",
        summary="Prometheus metrics of the whole service process group (text exposition format)",
        tag="ops",
        media_type="text/plain",
    ),
)
