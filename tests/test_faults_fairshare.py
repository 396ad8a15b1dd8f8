"""Issue 14.4: one caller at 4x the service's capacity does not slow another caller down.

``datasvc serve`` (one worker) with two callers: ``heavy`` floods from its own process with 4x as many
closed-loop connections as the worker serves at once (``DATASVC_MAX_IN_FLIGHT``), resending at once
whatever it is told; ``light`` sends one request every ``LIGHT_INTERVAL`` seconds. The gate checks
what the share answers (the light caller is never refused, the heavy one is, with Retry-After); the light
caller's latency alone and beside the flood, a ratio within one run, is a `perf` figure.
``FAIRSHARE_CALLER_MAX=<n>`` runs it with another share (16: none), to measure what the share buys.
"""

from __future__ import annotations

import os
import re

import httpx2
import pytest

from tests.support import load
from tests.support.servers import ProcessServer
from tests.support.twocallers import TOKENS, Flooded, auth_tokens, flood_beside

pytestmark = pytest.mark.slow

SUSTAINED = 16  # DATASVC_MAX_IN_FLIGHT: what the worker serves at once; a caller's default share is 4
LIGHT_INTERVAL = 0.01  # 100 requests/s: light next to the flood, ~200 samples per phase for its p99
# The light caller's p99 beside the flood may be this many times its p99 alone. Generous on purpose: one
# worker on two shared cores is CPU-bound under the flood (every refusal still costs the event loop a
# parse, a token hash and an answer), and CI runs other suites at once. With 429s sent at once instead of
# paced the ratio was several times higher; without the per-caller share the light caller is not only
# slowed but shed (503), which fails the 0-errors assertion (docs/security.md, Fair share between callers).
FACTOR = 10


def _refused(base_url: str) -> float:
    """Requests the service has refused (429 past a caller's share, or 503 past its own limit)."""
    text = httpx2.get(base_url + "/metrics", timeout=5).text
    pattern = r'^datasvc_http_request_duration_seconds_count\{.*status="(?:429|503)"\} (\S+)$'
    counts = re.findall(pattern, text, re.M)
    return sum(float(c) for c in counts)


@pytest.fixture
def flooded(settings, tmp_path) -> Flooded:
    caller_max = int(os.environ.get("FAIRSHARE_CALLER_MAX", "0")) or None  # to measure other shares
    settings = settings.with_overrides(
        pool_min_size=4,
        pool_max_size=4,
        max_in_flight=SUSTAINED,
        auth_tokens=auth_tokens(),
        caller_max_in_flight=caller_max,
    )
    with ProcessServer(settings, tmp_path / "serve.log") as server:
        seeded = httpx2.post(
            server.base_url + "/api/v1/users",
            json=load.unique_user("fair"),
            headers={"Authorization": f"Bearer {TOKENS['seed']}"},
        )
        path = f"/api/v1/users/{seeded.json()['id']}"
        return flood_beside(
            server.base_url,
            path,
            interval=LIGHT_INTERVAL,
            flood_path=path,
            connections=4 * SUSTAINED,
            full_tilt=lambda: _refused(server.base_url) > 0,  # the flood is at full tilt once it is refused
            flood=f"{4 * SUSTAINED} connections",
        )


def test_a_flooding_caller_is_held_to_its_share_and_the_light_caller_is_never_refused(flooded):
    """Counts only, which a loaded machine cannot change: the share is enforced by what it answers."""
    figure = flooded.figure
    print(figure)
    assert all(a.ok for a in flooded.alone), figure
    assert all(a.ok for a in flooded.beside), figure  # 0 errors: no 503 overloaded, no 429
    # The heavy caller was served up to its share and refused past it, with Retry-After.
    heavy = flooded.heavy
    assert heavy["statuses"].get("200", 0) > 0, figure
    assert heavy["statuses"].get("429", 0) > 0, figure
    assert set(heavy["statuses"]) <= {"200", "429"}, figure
    assert heavy["retry_after"], figure


@pytest.mark.perf
def test_the_light_callers_p99_beside_the_flood_stays_within_a_factor_of_its_p99_alone(flooded):
    figure = flooded.figure
    print(figure)
    assert flooded.p99_ratio <= FACTOR, figure
