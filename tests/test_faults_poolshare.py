"""Issue 21.6: one caller's slow statements do not starve another caller of the pool's connections.

``datasvc serve`` (one worker, a pool of `POOL`) with two callers, each within its in-flight share:
``heavy`` floods slow listings (a search matching every user, with an exact total) from its own process,
with more connections than the pool has; ``light`` sends one lookup every `LIGHT_INTERVAL`. The gate checks
that the light caller is never refused nor timed out; its latency alone and beside the flood, a ratio
within one run, is a `perf` figure.
The in-flight share (`datasvc.limits`) lets the heavy caller hold every connection; the pool's share per
caller (`datasvc.waitlist.RESERVE`) keeps one for the others.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from datasvc.auth import hash_token
from datasvc.settings import PROJECT_ROOT
from tests.support import load
from tests.support.seed import seed_users
from tests.support.servers import ProcessServer
from tests.support.waits import until_blocking

pytestmark = pytest.mark.slow

POOL = 4
# seed_users names them user_0001 …: a search over all of them, with an exact total, holds a connection.
USERS = 9_999
TOKENS = {"heavy": "heavy-token-0123456789", "light": "light-token-0123456789", "seed": "seed-token-01234567"}
SCOPES = {"heavy": "users:read", "light": "users:read", "seed": "users:write"}
HEAVY = 4 * POOL  # the heavy caller's connections: within its in-flight share (DATASVC_MAX_IN_FLIGHT / 4)
SLOW = "/api/v1/users?search=user&count=exact"  # every seeded user matches
LIGHT_INTERVAL = 0.02  # 50 lookups/s: ~100 samples per phase for the light caller's p99
PHASE = 2.0
FLOOD_BOUND = 60.0  # seconds: only a flood the test failed to stop runs this long
# The light caller's p99 beside the flood may be this many times its p99 alone (the goal is 3x). Generous
# on purpose: the one worker also parses and answers the heavy caller's listings on the same two shared
# cores, and CI runs other suites at once. Measured 3.7x at load average 15; without the pool's share per
# caller (RESERVE = 0), 22x: a light lookup queues behind whole listings, and with the acquire timeout it
# gets 503 (docs/reliability.md).
FACTOR = 8


def _config() -> str:
    return "; ".join(f"{name} {SCOPES[name]} {hash_token(token)}" for name, token in TOKENS.items())


async def _light(base_url: str, path: str) -> list[load.Answer]:
    return await load.hammer(
        base_url, path, workers=1, seconds=PHASE, token=TOKENS["light"], interval=LIGHT_INTERVAL
    )


def _pool_waiting(base_url: str) -> float:
    for line in httpx2.get(base_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith('datasvc_db_pool_waiting{target="primary"}'):
            return float(line.rpartition(" ")[2])
    return 0.0


@dataclass(frozen=True)
class Flooded:
    """The light caller's answers alone and beside the flood of slow listings, and the flood's summary."""

    alone: list[load.Answer]
    beside: list[load.Answer]
    heavy: dict[str, Any]

    @property
    def figure(self) -> str:
        p99_alone = load.p([a.seconds for a in self.alone], 0.99)
        p99_beside = load.p([a.seconds for a in self.beside], 0.99)
        return (
            f"light alone: {load.summary(self.alone)}; light beside the flood: {load.summary(self.beside)}; "
            f"p99 ratio {p99_beside / p99_alone:.2f}; heavy ({HEAVY} connections, pool {POOL}): {self.heavy}"
        )


@pytest.fixture
def flooded(settings, tmp_path) -> Flooded:
    seed_users(settings.database_url, USERS)
    settings = settings.with_overrides(
        pool_min_size=POOL, pool_max_size=POOL, max_in_flight=4 * HEAVY, auth_tokens=_config()
    )
    with ProcessServer(settings, tmp_path / "serve.log") as server:
        path = "/api/v1/users/1"
        asyncio.run(_light(server.base_url, path))  # warm up: connections, plans
        alone = asyncio.run(_light(server.base_url, path))
        # The flood runs until its stdin is closed, once the light caller has been measured beside it;
        # FLOOD_BOUND only ends a flood this test failed to stop.
        command = [sys.executable, "-m", "tests.support.flood", server.base_url, SLOW, str(HEAVY)]
        flood = subprocess.Popen(
            [*command, str(FLOOD_BOUND), "--until-stdin-closes"],
            cwd=PROJECT_ROOT,
            env={**os.environ, "FLOOD_TOKEN": TOKENS["heavy"]},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            # The flood is at full tilt once its requests queue for the pool's connections; the deadline
            # only bounds a hang.
            until_blocking(lambda: _pool_waiting(server.base_url) > 0, what="the flood queues")
            beside = asyncio.run(_light(server.base_url, path))
            assert flood.poll() is None, "the flood ended before the light caller was measured beside it"
            out, _ = flood.communicate(input="", timeout=FLOOD_BOUND)  # EOF on its stdin: stop
        finally:
            flood.kill()
    return Flooded(alone, beside, json.loads(out))


def test_a_caller_flooding_slow_listings_leaves_a_connection_to_the_others(flooded):
    """Counts only, which a loaded machine cannot change: the light caller is never refused or timed out."""
    figure = flooded.figure
    print(figure)
    assert all(a.ok for a in flooded.alone), figure
    assert all(a.ok for a in flooded.beside), figure  # no 503 pool-timeout, no 429
    assert set(flooded.heavy["statuses"]) == {"200"}, figure  # the heavy caller was within its share, served


@pytest.mark.perf
def test_the_light_callers_p99_beside_slow_listings_stays_within_a_factor_of_its_p99_alone(flooded):
    figure = flooded.figure
    print(figure)
    p99_alone = load.p([a.seconds for a in flooded.alone], 0.99)
    p99_beside = load.p([a.seconds for a in flooded.beside], 0.99)
    assert p99_beside <= FACTOR * p99_alone, figure
