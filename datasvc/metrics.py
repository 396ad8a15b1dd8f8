"""Prometheus metrics: the registry every feature reports into, rendered for ``GET /metrics``.

One `Metrics` per app, with its own ``CollectorRegistry`` (no process-global state). It owns what the
request path observes (requests by route template, statements by registry name, pool acquires, problems,
early closes); every other feature registers its own collector (`register`), yielding metric families
when scraped: this module knows no feature. Labels are bounded (route templates, never raw paths).

With ``datasvc serve --workers N`` a scrape reaches one worker and must report the whole group: serve sets
``PROMETHEUS_MULTIPROC_DIR`` before the workers start, prometheus-client keeps every value in files there,
and the answering worker reads them all (`_ProcessGroup`): counters and histograms summed over every
worker, dead ones included; collectors registered ``shared`` copied there every second and summed over
the live ones; any other collector is the answering worker's own view.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
from bisect import bisect_left
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString
from starlette.types import Scope

# Point lookups take well under a few ms in the database; the tail we care about is 10 ms to seconds.
_QUERY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_ACQUIRE_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_SAMPLE_EVERY = 1.0  # seconds between two copies of a worker's shared gauges into the shared files

Observe = Callable[[float], None]
CLOSED_REASONS: tuple[str, ...] = ("client-closed", "body-timeout", "head-timeout", "send-timeout")
CLOSED_REASONS += ("too-many-connections", "too-many-pipelined")


class Metrics:
    """Every metric of one app; the hot-path methods are a dict lookup and an observation."""

    def __init__(self, statement_names: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        # prometheus-client chose its mode once, at import, from PROMETHEUS_MULTIPROC_DIR.
        shared = (
            None if values.ValueClass is values.MutexValue else os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        )
        self.group = _ProcessGroup(shared) if shared else None
        # This worker's own view, rendered after the group's (with one process: the registry itself).
        self._worker = CollectorRegistry(auto_describe=True) if self.group else self.registry
        self.requests = self._histogram(
            "datasvc_http_request_duration_seconds",
            "HTTP requests (the _count is the request count) by route template, method and status.",
            ("route", "method", "status"),
            _REQUEST_BUCKETS,
        )
        self.queries = self._histogram(
            "datasvc_db_query_duration_seconds",
            "Statements run, by registry name: time from send to result, as seen by the service.",
            ("statement", "target"),
            _QUERY_BUCKETS,
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
        self.closed = Counter(
            "datasvc_http_closed",
            "Requests and connections ended early, by reason: client-closed (the caller closed its "
            "connection mid-request), body-timeout (408), head-timeout, send-timeout (the caller did not "
            "read its answer), too-many-connections, too-many-pipelined.",
            ["reason"],
            registry=self.registry,
        )
        self._closed = {reason: self.closed.labels(reason) for reason in CLOSED_REASONS}
        self.acquire = self._histogram(
            "datasvc_db_pool_acquire_seconds",
            "Time spent waiting for a pooled connection (including acquires that timed out).",
            ("target",),
            _ACQUIRE_BUCKETS,
        )
        # Made up front for every known statement and pool: the hot path is then one dict lookup.
        self._query_observers = {(n, "primary"): self.queries(n, "primary") for n in statement_names}
        self._acquire_observers = {k: self.acquire(k) for k in ("primary", "replica")}

    def _histogram(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> Callable[..., Observe]:
        # Called with label values: that child's observer, `_Histogram`'s or (in a group) the files'.
        if self.group is None:
            tally = _Histogram(name, documentation, labels, buckets)
            self.registry.register(tally)
            return tally.observer
        histogram = Histogram(name, documentation, list(labels), buckets=buckets, registry=self.registry)
        return lambda *values: histogram.labels(*values).observe

    def register(self, collector: Collector, *, shared: bool = False) -> None:
        """Report ``collector`` from now on: with ``--workers N``, the answering worker's own view, or with
        ``shared`` the sum of every live worker's."""
        if self.group is not None and shared:
            self.group.collectors.append(collector)
        else:
            self._worker.register(collector)

    def unregister(self, collector: Collector) -> None:
        if self.group is not None and collector in self.group.collectors:
            self.group.collectors.remove(collector)
        else:
            self._worker.unregister(collector)

    def request_observer(self, templates: Mapping[Any, str]) -> Callable[[Scope, int, float], None]:
        """What the request middleware calls once per request; ``templates`` maps endpoints to paths."""

        # By (endpoint, method, status): the observer of the histogram child those labels name.
        observers: dict[tuple[Any, str, int], Observe] = {}

        def observe(scope: Scope, status: int, seconds: float) -> None:
            # The router wrote the matched route's endpoint into this same scope dict.
            key = (scope.get("endpoint"), scope["method"], status)
            observer = observers.get(key)
            if observer is None:
                route = templates.get(key[0], "unmatched")
                observer = observers[key] = self.requests(route, key[1], str(status))
            observer(seconds)
            if status >= 400 and (problem := scope.get("state", {}).get("problem")) is not None:
                self.problems.labels(problem, str(status)).inc()

        return observe

    def count_closed(self, reason: str) -> None:  # one of `CLOSED_REASONS`
        self._closed[reason].inc()

    def observe_query(self, name: str, seconds: float, target: str = "primary") -> None:
        observe = self._query_observers.get((name, target))
        if observe is None:
            observe = self._query_observers[name, target] = self.queries(name, target)
        observe(seconds)

    def query_failed(self, name: str, exc: BaseException, target: str = "primary") -> None:
        self.query_errors.labels(name, getattr(exc, "sqlstate", None) or type(exc).__name__, target).inc()

    def observe_acquire(self, seconds: float, target: str = "primary") -> None:
        self._acquire_observers[target](seconds)

    def render(self) -> bytes:
        if self.group is not None:
            self.group.sample()
            return self.group.render() + generate_latest(self._worker)
        return generate_latest(self.registry)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """While the app serves: with a process group, copy this worker's gauges there every second."""
        if (group := self.group) is None:
            yield
            return
        task = asyncio.create_task(group.sample_forever())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            group.leave()


class _Histogram:
    """A histogram counted in plain Python, yielded as a ``HistogramMetricFamily`` when scraped.

    prometheus-client's ``observe`` walks the buckets in Python under two locks; here an observation is one
    C ``bisect`` and two additions on the event loop's thread, which also scrapes. The bucket rule is
    prometheus-client's: the first upper bound ``>=`` the value (``le``), +Inf last.
    """

    def __init__(
        self, name: str, documentation: str, labels: Sequence[str], buckets: Sequence[float]
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = list(labels)
        self.bounds = [*buckets, float("inf")]
        self.children: dict[tuple[str, ...], _Child] = {}

    def observer(self, *values: str) -> Observe:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = _Child(self.bounds)
        return child.observe

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for label_values, child in self.children.items():
            running, buckets = 0, []
            for bound, count in zip(self.bounds, child.counts, strict=True):
                running += count
                buckets.append((floatToGoString(bound), running))  # type: ignore[no-untyped-call]
            family.add_metric(list(label_values), buckets, child.sum)
        yield family


class _Child:
    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: list[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds


class _ProcessGroup:
    """The metrics of every worker of one `datasvc serve`, in prometheus-client's shared files."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.collectors: list[Collector] = []
        # Copies of the shared collectors' families, by name. Not in any registry: the files are it.
        self._gauges: dict[str, Gauge] = {}
        self._counters: dict[str, Counter] = {}
        self._copied: dict[tuple[str, tuple[str, ...]], float] = {}
        workers = "Worker processes serving (with --workers N)."
        Gauge("datasvc_workers", workers, multiprocess_mode="livesum", registry=None).set(1)

    def sample(self) -> None:
        """Copy this worker's shared collectors into the files: gauges as they are, counters by increase."""
        for collector in self.collectors:
            for family in collector.collect():
                for sample in family.samples:
                    labels = tuple(sample.labels)
                    values_ = tuple(sample.labels.values())
                    if family.type == "gauge":
                        self._gauge(family, labels).labels(*values_).set(sample.value)
                    elif family.type == "counter" and sample.name.endswith("_total"):
                        key = (family.name, values_)
                        grown = sample.value - self._copied.get(key, 0.0)
                        if grown > 0:
                            self._counter(family, labels).labels(*values_).inc(grown)
                            self._copied[key] = sample.value

    def _gauge(self, family: Metric, labels: tuple[str, ...]) -> Gauge:
        if (gauge := self._gauges.get(family.name)) is None:
            gauge = Gauge(
                family.name, family.documentation, labels, multiprocess_mode="livesum", registry=None
            )
            self._gauges[family.name] = gauge
        return gauge

    def _counter(self, family: Metric, labels: tuple[str, ...]) -> Counter:
        if (counter := self._counters.get(family.name)) is None:
            counter = Counter(family.name, family.documentation, labels, registry=None)
            self._counters[family.name] = counter
        return counter

    async def sample_forever(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(_SAMPLE_EVERY)

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
