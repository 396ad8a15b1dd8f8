"""The targets on a primary with a hot standby: ``replica`` (reads from the standby) and ``replica-direct``.

Both are ``datasvc serve --workers 1`` on a throwaway primary that the run starts, migrates and seeds with
the same N users as the direct targets (bench/seed.sql), and its standby made with ``pg_basebackup -R -X
stream`` (tests/support/cluster.py, the clusters the replica tests start). ``replica`` sets
``DATASVC_REPLICA_URLS`` to the standby, so the lookup by id runs there and every create pays the
consistency token's extra round trip; ``replica-direct`` is the same service on the same primary without
replicas. Their ratio is the cost of the replica path alone, on the same data and server configuration.
Both servers share this machine's cores with the service: what a replica adds here is a routing decision
and a second server, not more CPU.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import load as L
from tests.support.cluster import Cluster

TARGETS = ("replica", "replica-direct")
SCENARIOS = ("by_id", "create")
HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Pair:
    primary_url: str
    standby_url: str

    def env(self, target: str) -> dict[str, str]:
        """The settings of ``target``'s service (DATABASE_URL is given separately)."""
        return {"DATASVC_REPLICA_URLS": self.standby_url} if target == "replica" else {}


@contextmanager
def started(n: int) -> Iterator[Pair]:
    """A migrated primary with ``n`` users and its hot standby, removed afterwards."""
    primary = Cluster("datasvc-bench-primary-")
    standby: Cluster | None = None
    try:
        primary.init()
        primary.start()
        subprocess.run(
            [sys.executable, "-m", "datasvc", "migrate"],
            env={**os.environ, "DATABASE_URL": primary.url},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        print(f"loading {n:,} users into the replica targets' primary ...", flush=True)
        L.psql(primary.url, file=HERE / "seed.sql", variables={"n": str(n)})
        # Made only now, so that its free port is picked right before it binds it: seeding takes minutes,
        # and meanwhile another process may take a port picked earlier (as one did).
        standby = Cluster("datasvc-bench-standby-")
        standby.basebackup(primary)
        standby.start()
        yield Pair(primary.url, standby.url)
    finally:
        if standby is not None:
            standby.remove()
        primary.remove()
