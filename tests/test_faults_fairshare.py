"""Issue 14.4: one caller at 4x the service's capacity does not slow another caller down.

``datasvc serve`` (one worker) with two callers: ``heavy`` floods from its own process with 4x as many
closed-loop connections as the worker serves at once (``DATASVC_MAX_IN_FLIGHT``), resending at once
whatever it is told; ``light`` sends one request every ``LIGHT_INTERVAL`` seconds. The gate checks
what the share answers (the light caller is never refused, the heavy one is, with Retry-After); the light
caller's latency alone and beside the flood, a ratio within one run, is a `perf` figure.
``FAIRSHARE_CALLER_MAX=<n>`` runs it with another share (16: none), to measure what the share buys.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from datasvc.auth import hash_token
from datasvc.settings import PROJECT_ROOT
from tests.support import load
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

SUSTAINED = 16  # DATASVC_MAX_IN_FLIGHT: what the worker serves at once; a caller's default share is 4
TOKENS = {"heavy": "heavy-token-0123456789", "light": "light-token-0123456789", "seed": "seed-token-01234567"}
SCOPES = {"heavy": "users:read", "light": "users:read", "seed": "users:write"}
LIGHT_INTERVAL = 0.01  # 100 requests/s: light next to the flood, ~200 samples per phase for its p99
PHASE = 2.0  # seconds the light caller is measured, alone and then beside the flood
FLOOD_BOUND = 60.0  # seconds: only a flood the test failed to stop runs this long
# The light caller's p99 beside the flood may be this many times its p99 alone. Generous on purpose: one
# worker on two shared cores is CPU-bound under the flood (every refusal still costs the event loop a
# parse, a token hash and an answer), and CI runs other suites at once. Measured 1.5-2.2x (and 1.3-4.3x
# at load average 5-9); with 429s sent at once instead of paced, 2.7-11x. Without the per-caller share
# the light caller is not only slowed but shed (503), which fails the 0-errors assertion (figures and
# commands: docs/security.md, Fair share between callers).
FACTOR = 10


def _config() -> str:
    return "; ".join(f"{name} {SCOPES[name]} {hash_token(token)}" for name, token in TOKENS.items())


def _refused(base_url: str) -> float:
    """Requests the service has refused (429 past a caller's share, or 503 past its own limit)."""
    text = httpx2.get(base_url + "/metrics", timeout=5).text
    pattern = r'^datasvc_http_request_duration_seconds_count\{.*status="(?:429|503)"\} (\S+)$'
    counts = re.findall(pattern, text, re.M)
    return sum(float(c) for c in counts)


async def _light(base_url: str, path: str) -> list[load.Answer]:
    return await load.hammer(
        base_url, path, workers=1, seconds=PHASE, token=TOKENS["light"], interval=LIGHT_INTERVAL
    )


@dataclass(frozen=True)
class Flooded:
    """The light caller's answers alone and beside the flood, and the flood's own summary."""

    alone: list[load.Answer]
    beside: list[load.Answer]
    heavy: dict[str, Any]

    @property
    def figure(self) -> str:
        p99_alone = load.p([a.seconds for a in self.alone], 0.99)
        p99_beside = load.p([a.seconds for a in self.beside], 0.99)
        return (
            f"light alone: {load.summary(self.alone)}; light beside the flood: {load.summary(self.beside)}; "
            f"p99 ratio {p99_beside / p99_alone:.2f}; heavy ({4 * SUSTAINED} connections): {self.heavy}"
        )


@pytest.fixture
def flooded(settings, tmp_path) -> Flooded:
    caller_max = int(os.environ.get("FAIRSHARE_CALLER_MAX", "0")) or None  # to measure other shares
    settings = settings.with_overrides(
        pool_min_size=4,
        pool_max_size=4,
        max_in_flight=SUSTAINED,
        auth_tokens=_config(),
        caller_max_in_flight=caller_max,
    )
    with ProcessServer(settings, tmp_path / "serve.log") as server:
        seeded = httpx2.post(
            server.base_url + "/api/v1/users",
            json=load.unique_user("fair"),
            headers={"Authorization": f"Bearer {TOKENS['seed']}"},
        )
        path = f"/api/v1/users/{seeded.json()['id']}"
        asyncio.run(_light(server.base_url, path))  # warm up: connections, plans
        alone = asyncio.run(_light(server.base_url, path))
        # The flood runs until its stdin is closed, once the light caller has been measured beside it;
        # FLOOD_BOUND only ends a flood this test failed to stop.
        command = [sys.executable, "-m", "tests.support.flood", server.base_url, path, str(4 * SUSTAINED)]
        flood = subprocess.Popen(
            [*command, str(FLOOD_BOUND), "--until-stdin-closes"],
            cwd=PROJECT_ROOT,
            env={**os.environ, "FLOOD_TOKEN": TOKENS["heavy"]},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            # The flood is at full tilt once it is refused. The deadline only bounds a hang.
            deadline = time.monotonic() + FLOOD_BOUND / 2
            while _refused(server.base_url) == 0:
                assert flood.poll() is None, "the flood ended before it was refused"
                assert time.monotonic() < deadline, "the flood was never refused"
                time.sleep(0.02)
            beside = asyncio.run(_light(server.base_url, path))
            assert flood.poll() is None, "the flood ended before the light caller was measured beside it"
            out, _ = flood.communicate(input="", timeout=FLOOD_BOUND)  # EOF on its stdin: stop
        finally:
            flood.kill()
    return Flooded(alone, beside, json.loads(out))


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
    p99_alone = load.p([a.seconds for a in flooded.alone], 0.99)
    p99_beside = load.p([a.seconds for a in flooded.beside], 0.99)
    assert p99_beside <= FACTOR * p99_alone, figure
