"""Issue 5.11: at 4x the concurrency the service sustains, the excess is shed at once, and it recovers."""

from __future__ import annotations

import pytest

from datasvc.settings import Settings
from tests import load
from tests.liveserver import LiveServer

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


async def test_four_times_the_load_is_shed_fast_and_latency_recovers(settings: Settings, tmp_path):
    settings = settings.with_overrides(pool_min_size=4, pool_max_size=4, max_in_flight=SUSTAINED)
    with LiveServer(settings, tmp_path / "serve.log") as server:
        async with load.client(server.base_url) as c:
            seed = await c.post("/api/v1/users", json=load.unique_user("seed"))
            uid = seed.json()["id"]
        await _phase(server.base_url, uid, SUSTAINED, 0.5)  # warm up connections and plans
        before = await _phase(server.base_url, uid, SUSTAINED, 1.5)
        overload = await _phase(server.base_url, uid, 4 * SUSTAINED, 2.0)
        polite = await _phase(server.base_url, uid, 4 * SUSTAINED, 2.0, polite=True)
        after = await _phase(server.base_url, uid, SUSTAINED, 1.5)

    shed = [a for a in overload if not a.ok]
    served = [a for a in overload if a.ok]
    p50_before = load.p([a.seconds for a in before], 0.5)
    p50_after = load.p([a.seconds for a in after], 0.5)
    figure = (
        f"before ({SUSTAINED} callers): {load.summary(before)}, {_rate(before, 1.5):.0f} ok/s; "
        f"4x ({4 * SUSTAINED} callers): served {load.summary(served)}, {_rate(overload, 2.0):.0f} ok/s, "
        f"shed {load.summary(shed)}; 4x honouring Retry-After: {load.summary(polite)}, "
        f"{_rate(polite, 2.0):.0f} ok/s; after: {load.summary(after)}"
    )
    assert all(a.ok for a in before), figure
    assert shed, figure
    assert all(a.is_503_problem and a.slug == "overloaded" for a in shed), figure
    # Shedding is an answer, not a wait for a connection: a wait would take up to acquire_timeout (2 s).
    # A quarter of it leaves room for a loaded 2-core machine (measured quiet: p99 33 ms).
    assert load.p([a.seconds for a in shed], 0.99) < settings.acquire_timeout * 1000 / 4, figure
    # The admitted requests do not queue behind the excess: they stay far from the pool wait bound
    # (half of it: measured quiet p99 137 ms, and the test process itself runs 32 callers on 2 cores).
    assert load.p([a.seconds for a in served], 0.99) < settings.acquire_timeout * 1000 / 2, figure
    assert all(a.ok for a in after), figure
    # A ratio within the run: latency comes back to what it was before the overload (3x + 10 ms absorbs
    # other suites' load changing between the two phases; measured quiet 7.0 ms after, 9.9 ms before).
    assert p50_after <= 3 * p50_before + 10, figure
    # Callers that wait as told are barely shed (each excess caller about once per Retry-After second),
    # while a storm of instant retries is mostly shed: a count, whatever the machine's load.
    assert sum(not a.ok for a in polite) <= 0.1 * len(polite), figure
    assert sum(not a.ok for a in overload) >= 0.5 * len(overload), figure
    # ... and they leave the service its throughput: measured quiet 770 against 703 ok/s before, but
    # the phases run one after the other, and a neighbour's burst on a 2-core machine halved one
    # phase's rate (522 against 1059 ok/s, with `python -m bench` beside it): a quarter is the bound.
    assert _rate(polite, 2.0) >= 0.25 * _rate(before, 1.5), figure
    print(figure)
