"""What the connection pools report to ``/metrics``: open, idle, most and waiting connections per target.

The pools (`datasvc.pool.Pool`, one per server) are read when Prometheus scrapes, through `Stats` only:
this module knows nothing of how a pool keeps its connections.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import GaugeMetricFamily, Metric


@dataclass(slots=True)
class Stats:
    """What the metrics report of one pool: open, idle, most and waiting connections."""

    size: int
    idle: int
    max: int
    waiting: int


class Reports(Protocol):
    """A pool as the collector sees it: the kind of server it reaches, and its `Stats` now."""

    @property
    def kind(self) -> str: ...

    def stats(self) -> Stats: ...


class PoolCollector:
    """The pools' size, idle, most and waiting connections by ``target`` kind, read when scraped."""

    def __init__(self, pools: Callable[[], Iterable[Reports]]) -> None:
        self.pools = pools

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        totals: dict[str, list[int]] = {}
        for pool in self.pools():
            s = pool.stats()
            for i, value in enumerate((s.size, s.idle, s.max, s.waiting)):
                totals.setdefault(pool.kind, [0, 0, 0, 0])[i] += value
        connections = GaugeMetricFamily(
            "datasvc_db_pool_connections", "Open pool connections by state.", labels=["state", "target"]
        )
        size = GaugeMetricFamily("datasvc_db_pool_size", "Open pool connections.", labels=["target"])
        most = GaugeMetricFamily("datasvc_db_pool_max", "Most connections the pool opens.", labels=["target"])
        waiting = GaugeMetricFamily(
            "datasvc_db_pool_waiting", "Requests waiting for a pooled connection now.", labels=["target"]
        )
        for kind, (open_, idle, max_size, waits) in totals.items():
            connections.add_metric(["in_use", kind], open_ - idle)
            connections.add_metric(["idle", kind], idle)
            size.add_metric([kind], open_)
            most.add_metric([kind], max_size)
            waiting.add_metric([kind], waits)
        yield from (connections, size, most, waiting)
