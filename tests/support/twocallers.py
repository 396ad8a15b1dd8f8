"""Two callers of one service: a light one measured alone, then beside a heavy one flooding it.

The fair-share tests (tests/test_faults_fairshare.py: requests in flight; tests/test_faults_poolshare.py:
pool connections) run the same scene and differ in what the heavy caller floods and how it is known to be
at full tilt. The heavy caller floods from its own process (`tests.support.flood`), so that its CPU and
event loop are not the light caller's.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from datasvc.auth import hash_token
from datasvc.settings import PROJECT_ROOT
from tests.support import load
from tests.support.waits import until_blocking

TOKENS = {"heavy": "heavy-token-0123456789", "light": "light-token-0123456789", "seed": "seed-token-01234567"}
SCOPES = {"heavy": "users:read", "light": "users:read", "seed": "users:write"}
PHASE = 2.0  # seconds the light caller is measured, alone and then beside the flood
FLOOD_BOUND = 60.0  # seconds: only a flood the test failed to stop runs this long


def auth_tokens() -> str:
    """``DATASVC_AUTH_TOKENS`` for the two callers and a writer that seeds what they read."""
    return "; ".join(f"{name} {SCOPES[name]} {hash_token(token)}" for name, token in TOKENS.items())


@dataclass(frozen=True)
class Flooded:
    """The light caller's answers alone and beside the flood, and the flood's own summary."""

    alone: list[load.Answer]
    beside: list[load.Answer]
    heavy: dict[str, Any]
    flood: str  # what the heavy caller sent, for the figure

    @property
    def p99_ratio(self) -> float:
        """The light caller's p99 beside the flood over its p99 alone."""
        p99_alone = load.p([a.seconds for a in self.alone], 0.99)
        return load.p([a.seconds for a in self.beside], 0.99) / p99_alone

    @property
    def figure(self) -> str:
        return (
            f"light alone: {load.summary(self.alone)}; light beside the flood: {load.summary(self.beside)}; "
            f"p99 ratio {self.p99_ratio:.2f}; heavy ({self.flood}): {self.heavy}"
        )


def flood_beside(
    base_url: str,
    path: str,
    *,
    interval: float,
    flood_path: str,
    connections: int,
    full_tilt: Callable[[], bool],
    flood: str,
) -> Flooded:
    """The light caller (one request to ``path`` every ``interval`` s) warmed up and measured alone; then
    the heavy caller floods ``flood_path`` over ``connections`` closed-loop connections, and once
    ``full_tilt()`` holds the light caller is measured beside it; then the flood is stopped."""

    def light() -> list[load.Answer]:
        return asyncio.run(
            load.hammer(base_url, path, workers=1, seconds=PHASE, token=TOKENS["light"], interval=interval)
        )

    light()  # warm up: connections, plans
    alone = light()
    # The flood runs until its stdin is closed, once the light caller has been measured beside it;
    # FLOOD_BOUND only ends a flood this test failed to stop.
    command = [sys.executable, "-m", "tests.support.flood", base_url, flood_path, str(connections)]
    process = subprocess.Popen(
        [*command, str(FLOOD_BOUND), "--until-stdin-closes"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "FLOOD_TOKEN": TOKENS["heavy"]},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        # The deadline only bounds a hang.
        until_blocking(lambda: process.poll() is not None or full_tilt(), what="the flood at full tilt")
        assert process.poll() is None, "the flood ended before it was at full tilt"
        beside = light()
        assert process.poll() is None, "the flood ended before the light caller was measured beside it"
        out, _ = process.communicate(input="", timeout=FLOOD_BOUND)  # EOF on its stdin: stop
    finally:
        process.kill()
    return Flooded(alone, beside, json.loads(out), flood)
