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

import httpx2
import pytest

from tests.support.seed import seed_users
from tests.support.servers import ProcessServer
from tests.support.twocallers import Flooded, auth_tokens, flood_beside

pytestmark = pytest.mark.slow

POOL = 4
# seed_users names them user_0001 …: a search over all of them, with an exact total, holds a connection.
USERS = 9_999
HEAVY = 4 * POOL  # the heavy caller's connections: within its in-flight share (DATASVC_MAX_IN_FLIGHT / 4)
SLOW = "/api/v1/users?search=user&count=exact"  # every seeded user matches
LIGHT_INTERVAL = 0.02  # 50 lookups/s: ~100 samples per phase for the light caller's p99
# The light caller's p99 beside the flood may be this many times its p99 alone (the goal is 3x). Generous
# on purpose: the one worker also parses and answers the heavy caller's listings on the same two shared
# cores, and CI runs other suites at once. Without the pool's share per caller (RESERVE = 0) a light
# lookup queues behind whole listings, and with the acquire timeout it gets 503 (docs/reliability.md).
FACTOR = 8


def _pool_waiting(base_url: str) -> float:
    for line in httpx2.get(base_url + "/metrics", timeout=5).text.splitlines():
        if line.startswith('datasvc_db_pool_waiting{target="primary"}'):
            return float(line.rpartition(" ")[2])
    return 0.0


@pytest.fixture
def flooded(settings, tmp_path) -> Flooded:
    seed_users(settings.database_url, USERS)
    settings = settings.with_overrides(
        pool_min_size=POOL, pool_max_size=POOL, max_in_flight=4 * HEAVY, auth_tokens=auth_tokens()
    )
    with ProcessServer(settings, tmp_path / "serve.log") as server:
        return flood_beside(
            server.base_url,
            "/api/v1/users/1",
            interval=LIGHT_INTERVAL,
            flood_path=SLOW,
            connections=HEAVY,
            # The flood is at full tilt once its requests queue for the pool's connections.
            full_tilt=lambda: _pool_waiting(server.base_url) > 0,
            flood=f"{HEAVY} connections, pool {POOL}",
        )


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
    assert flooded.p99_ratio <= FACTOR, figure
