"""Read replicas: which hot standby may answer a read now, and why another may not.

Each replica of ``DATASVC_REPLICA_URLS`` has a pool of its own (`datasvc.pool.Pool`). A background task
samples, every `PERIOD` seconds, the primary's WAL position (``pg_current_wal_lsn()``) and each replica's
replay position, recovery state and replay pause (``sql/replica/``). A replica is in rotation while it
answers, is still in recovery, is not paused, and is at most ``DATASVC_REPLICA_MAX_LAG`` seconds behind.

Lag is measured in time *from WAL positions*, not from timestamps: `LsnHistory` remembers when the
primary was first seen at each position, and a replica is as far behind as the time since the primary
first passed the position the replica has replayed. ``now() - pg_last_xact_replay_timestamp()`` and
``pg_stat_replication.replay_lag`` misreport it: the first grows while nothing is written (a replica
with nothing to replay looks behind), the second stays near zero while replay is paused. A replica that
has replayed everything the primary wrote is 0 s behind, however long ago the last write was.

Reads that carry a consistency token (`datasvc.consistency`) go only to a replica that has replayed up
to the token: one whose sampled replay position has reached it (the sample is a lower bound of the
replica's real position, so the choice can only err towards the primary), or, when no sample has yet, one
in rotation asked on the spot (`datasvc.db.Database.run`), the primary if it has not either.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from datasvc.settings import redact_url

if TYPE_CHECKING:
    from datasvc.pool import Pool

log = logging.getLogger("datasvc.replicas")

PERIOD = 0.25  # seconds between two samples; also how soon a paused or promoted replica leaves rotation
# A sample that takes longer than this counts as "unreachable": a replica that slow is no help to reads.
SAMPLE_TIMEOUT = 1.0


class Replica:
    """A hot standby, its pool and what the last sample said about it."""

    __slots__ = ("in_rotation", "lag", "paused", "pool", "replay_lsn", "shown", "why_out")

    def __init__(self, url: str, pool: Pool) -> None:
        self.pool = pool
        self.shown = redact_url(url)
        self.in_rotation = False
        self.why_out: str | None = "not sampled yet"
        self.lag: float | None = None
        self.replay_lsn: int | None = None
        self.paused = False

    def saw_replay(self, lsn: int) -> None:
        """A replay position read between two samples (a token read asked): it only ever moves forward."""
        if self.replay_lsn is None or lsn > self.replay_lsn:
            self.replay_lsn = lsn

    def take_out(self, why: str) -> None:
        if self.in_rotation:
            log.warning("replica out of rotation", extra={"replica": self.shown, "why": why})
        self.in_rotation, self.why_out = False, why

    def put_in(self) -> None:
        if not self.in_rotation:
            log.info("replica in rotation", extra={"replica": self.shown, "lag": self.lag})
        self.in_rotation, self.why_out = True, None

    def status(self) -> dict[str, Any]:
        """What ``/health/ready`` says about this replica."""
        return {
            "url": self.shown,
            "in_rotation": self.in_rotation,
            "lag_seconds": None if self.lag is None else round(self.lag, 3),
            "why_out": self.why_out,
        }


@dataclass(slots=True)
class LsnHistory:
    """The primary's WAL positions, each with the time it was first seen, for the last ``keep`` seconds."""

    keep: float
    samples: deque[tuple[float, int]] = field(default_factory=deque)

    def add(self, at: float, lsn: int) -> None:
        if self.samples and lsn <= self.samples[-1][1]:
            if lsn < self.samples[-1][1]:
                # A new primary with a shorter history (failover): positions before it mean nothing now.
                self.samples.clear()
                self.samples.append((at, lsn))
            return  # not moved: the time it was first seen stands
        self.samples.append((at, lsn))
        while len(self.samples) > 1 and self.samples[1][0] < at - self.keep:
            self.samples.popleft()

    def lag(self, replayed: int, now: float) -> float:
        """Seconds since the primary first passed ``replayed`` (0: the replica has everything sampled).

        At most ``keep`` seconds plus a period: a replica further behind is reported that far.
        """
        for at, lsn in self.samples:
            if lsn > replayed:
                return max(0.0, now - at)
        return 0.0


Sample = Callable[["Pool", str], Awaitable[Any]]


class ReplicaSet:
    """The replicas, the primary's position history, and the round-robin choice among those in rotation."""

    def __init__(self, replicas: list[Replica], *, max_lag: float, period: float = PERIOD) -> None:
        self.replicas = replicas
        self.max_lag = max_lag
        self.period = period
        self.history = LsnHistory(keep=max(10 * max_lag, 10.0))
        self._next = 0

    def __bool__(self) -> bool:
        return bool(self.replicas)

    def choose(self, min_lsn: int | None = None) -> Replica | None:
        """The next replica in rotation that has replayed ``min_lsn`` (if given); None: use the primary."""
        count = len(self.replicas)
        for step in range(count):
            replica = self.replicas[(self._next + step) % count]
            if not replica.in_rotation:
                continue
            if min_lsn is not None and (replica.replay_lsn is None or replica.replay_lsn < min_lsn):
                continue
            self._next = (self._next + step + 1) % count
            return replica
        return None

    async def sample(self, primary: Pool, run: Sample) -> None:
        """One round: the primary's position, then every replica's state, concurrently."""
        try:
            lsn = await asyncio.wait_for(run(primary, "replica.primary_lsn"), SAMPLE_TIMEOUT)
        except Exception as exc:  # the primary is down or busy: judge replicas on what is known
            log.debug("primary position not sampled", extra={"error": type(exc).__name__})
        else:
            self.history.add(time.monotonic(), int(lsn))
        await asyncio.gather(*(self._sample_one(r, run) for r in self.replicas))

    async def _sample_one(self, replica: Replica, run: Sample) -> None:
        try:
            row = await asyncio.wait_for(run(replica.pool, "replica.replay_state"), SAMPLE_TIMEOUT)
        except Exception as exc:  # refused, reset, timed out, shutting down: unusable for now
            replica.lag = None
            replica.take_out(f"unreachable ({type(exc).__name__})")
            return
        if not row["in_recovery"]:
            replica.lag = None
            replica.take_out("no longer in recovery (promoted): not a replica of this primary")
            return
        replica.replay_lsn = row["replay_lsn"]
        replica.paused = row["paused"]
        replica.lag = self.history.lag(replica.replay_lsn or 0, time.monotonic())
        if replica.paused:
            replica.take_out("WAL replay is paused (pg_wal_replay_pause)")
        elif replica.lag > self.max_lag:
            replica.take_out(f"{replica.lag:.2f} s behind the primary (more than {self.max_lag:g} s)")
        else:
            replica.put_in()

    async def run(self, primary: Pool, run: Sample) -> None:
        """Sample every `period` seconds until cancelled."""
        while True:
            started = time.monotonic()
            try:
                await self.sample(primary, run)
            except Exception:  # a bug in one round must not stop the sampling
                log.exception("replica sampling failed")
            await asyncio.sleep(max(0.0, self.period - (time.monotonic() - started)))


class ReplicaCollector(Collector):
    """``datasvc_replica_lag_seconds`` and ``datasvc_replica_in_rotation`` per replica, read when scraped."""

    def __init__(self, replicas: ReplicaSet) -> None:
        self.replicas = replicas

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            "datasvc_replica_lag_seconds",
            "How far each replica is behind the primary, in seconds, at the last sample (absent: unknown).",
            labels=["replica"],
        )
        rotation = GaugeMetricFamily(
            "datasvc_replica_in_rotation",
            "1 while the replica takes reads, 0 while it is out (/health/ready says why).",
            labels=["replica"],
        )
        for replica in self.replicas.replicas:
            if replica.lag is not None:
                lag.add_metric([replica.shown], replica.lag)
            rotation.add_metric([replica.shown], int(replica.in_rotation))
        yield lag
        yield rotation
