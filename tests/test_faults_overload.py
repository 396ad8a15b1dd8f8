"""Issue 5.11: at 4x the concurrency the service sustains, the excess is shed at once, and it recovers.

The gate checks what the service answers in each phase; how fast (p50/p99 bounds, successes per CPU
second) is a `perf` test, run from the same fixture, printed by CI and not gating.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from datasvc.settings import Settings
from tests.support import load
from tests.support.servers import ProcessServer

pytestmark = pytest.mark.slow

SUSTAINED = 8  # concurrent callers the service is configured for (max_in_flight)


async def _phase(
    base_url: str, uid: int, workers: int, seconds: float, *, polite: bool = False
) -> list[load.Answer]:
    return await load.hammer(
        base_url, f"/api/v1/users/{uid}", workers=workers, seconds=seconds, honour_retry_after=polite
    )


def _rate(answers: list[load.Answer], seconds: float) -> float:
    return sum(a.ok for a in answers) / seconds


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the process has used: /proc/<pid>/stat fields 14 and 15."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Phases:
    """Each phase's answers, and the successes per CPU second of the service in the first three."""

    before: list[load.Answer]
    overload: list[load.Answer]
    polite: list[load.Answer]
    after: list[load.Answer]
    ok_per_cpu: list[float]

    @property
    def shed(self) -> list[load.Answer]:
        return [a for a in self.overload if not a.ok]

    @property
    def served(self) -> list[load.Answer]:
        return [a for a in self.overload if a.ok]

    @property
    def figure(self) -> str:
        before, polite, ok_per_cpu = self.before, self.polite, self.ok_per_cpu
        return (
            f"before ({SUSTAINED} callers): {load.summary(before)}, {_rate(before, 1.5):.0f} ok/s; "
            f"4x ({4 * SUSTAINED} callers): served {load.summary(self.served)}, "
            f"{_rate(self.overload, 2.0):.0f} ok/s, shed {load.summary(self.shed)}; "
            f"4x honouring Retry-After: {load.summary(polite)}, {_rate(polite, 2.0):.0f} ok/s; "
            f"after: {load.summary(self.after)}; successes per service CPU second: before "
            f"{ok_per_cpu[0]:.0f}, 4x {ok_per_cpu[1]:.0f}, 4x honouring Retry-After {ok_per_cpu[2]:.0f}"
        )


@pytest.fixture
async def phases(settings: Settings, tmp_path) -> Phases:
    """Sustained load, then 4x the callers (instant retries), 4x honouring Retry-After, sustained again."""
    settings = settings.with_overrides(pool_min_size=4, pool_max_size=4, max_in_flight=SUSTAINED)
    with ProcessServer(settings, tmp_path / "serve.log") as server:
        async with load.client(server.base_url) as c:
            seed = await c.post("/api/v1/users", json=load.unique_user("seed"))
            uid = seed.json()["id"]
        pid = server.pid  # one worker: the process that serves
        await _phase(server.base_url, uid, SUSTAINED, 0.5)  # warm up connections and plans
        cpu = [_cpu_seconds(pid)]
        before = await _phase(server.base_url, uid, SUSTAINED, 1.5)
        cpu.append(_cpu_seconds(pid))
        overload = await _phase(server.base_url, uid, 4 * SUSTAINED, 2.0)
        cpu.append(_cpu_seconds(pid))
        polite = await _phase(server.base_url, uid, 4 * SUSTAINED, 2.0, polite=True)
        cpu.append(_cpu_seconds(pid))
        after = await _phase(server.base_url, uid, SUSTAINED, 1.5)
    # Successes per CPU second of the service, per phase: what a request costs the service, which a
    # neighbour's load on the machine hardly changes (wall-clock rates swung 5x between phases).
    ok_per_cpu = [
        sum(a.ok for a in answers) / max(cpu[i + 1] - cpu[i], 0.01)
        for i, answers in enumerate((before, overload, polite))
    ]
    return Phases(before, overload, polite, after, ok_per_cpu)


async def test_four_times_the_load_is_shed_with_503_and_the_service_recovers(phases: Phases):
    """What the service answers, which a loaded machine cannot change (the timings: the perf test)."""
    figure = phases.figure
    print(figure)
    assert all(a.ok for a in phases.before), figure
    assert phases.shed, figure
    assert all(a.is_503_problem and a.slug == "overloaded" for a in phases.shed), figure
    assert all(a.ok for a in phases.after), figure
    # A storm of instant retries is shed, each refusal paced by the protocol (limits.PAUSE), so how many
    # are refused against admitted depends on the machine's speed: what is asserted is what each got.
    assert any(not a.ok for a in phases.overload), figure
    assert all(a.ok or (a.is_503_problem and a.slug == "overloaded") for a in phases.overload), figure


@pytest.mark.perf
async def test_four_times_the_load_is_shed_fast_and_latency_recovers(phases: Phases, settings: Settings):
    figure = phases.figure
    print(figure)
    shed, served, polite = phases.shed, phases.served, phases.polite
    # Shedding is an answer, not a wait for a connection: a wait would take up to acquire_timeout (2 s).
    # A quarter of it leaves room for a loaded 2-core machine (measured quiet: p99 33 ms).
    assert load.p([a.seconds for a in shed], 0.99) < settings.acquire_timeout * 1000 / 4, figure
    # The admitted requests do not queue behind the excess: they stay far from the pool wait bound
    # (half of it: measured quiet p99 137 ms, and the test process itself runs 32 callers on 2 cores).
    assert load.p([a.seconds for a in served], 0.99) < settings.acquire_timeout * 1000 / 2, figure
    # Latency comes back once the overload ends: a backlog left behind would put the after phase in the
    # hundreds of milliseconds. 3x + 50 ms absorbs a neighbour's load changing between the phases
    # (measured quiet 7.0 ms after, 9.9 ms before; beside `python -m bench`, 15.4 after 2.3 ms before).
    p50_before = load.p([a.seconds for a in phases.before], 0.5)
    assert load.p([a.seconds for a in phases.after], 0.5) <= 3 * p50_before + 50, figure
    # Callers that wait as told are barely shed (each excess caller about once per Retry-After second),
    # a share that depends on how many requests the admitted callers complete meanwhile.
    assert sum(not a.ok for a in polite) <= 0.1 * len(polite), figure
    # ... and they cost the service no more per success than the sustained load did, while the storm
    # spends its CPU refusing. Counted per CPU second of the service, not per wall-clock second: with
    # `python -m bench` beside it the wall-clock rate swung from 2118 ok/s (before) to 458 (polite).
    assert phases.ok_per_cpu[2] >= 0.5 * phases.ok_per_cpu[0], figure
