"""What tracing costs one GET by id in the service, in instructions: ``python -m bench.trace_cost``.

One configuration per process (MODE: ``off``; ``0pct``, tracing on and nothing sampled; ``1pct``; ``all``;
``unnamed``, tracing off with the lookup sent as the unnamed statement), raw ASGI calls against
``DATABASE_URL`` (the bench database), after a warm-up. Run under callgrind with instrumentation off, and
switch it on around the measured window, which the driver marks with files (FLAG.ready, FLAG.go,
FLAG.done, FLAG.end)::

    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file=FLAG.out \
        python -m bench.trace_cost MODE http://127.0.0.1:PORT 400 FLAG &     # PORT: python -m bench.tracing
    # once FLAG.ready exists: callgrind_control -i on PID; touch FLAG.go
    # once FLAG.done exists: callgrind_control -i off PID; touch FLAG.end; the totals are in FLAG.out
"""

import asyncio
import dataclasses
import gc
import os
import sys
import time
from pathlib import Path

from datasvc.app import create_app
from datasvc.registry import Registry
from datasvc.settings import Settings
from datasvc.sqlfiles import PlanCache


async def started(app):
    q_in, q_out = asyncio.Queue(), asyncio.Queue()
    await q_in.put({"type": "lifespan.startup"})
    lscope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(lscope, q_in.get, q_out.put))
    msg = await q_out.get()
    assert msg["type"] == "lifespan.startup.complete", msg
    return lscope["state"], q_in, q_out, task


async def rcv():
    return {"type": "http.request", "body": b"", "more_body": False}


async def batch(app, state, n, offset):
    ok = 0

    async def snd(m):
        nonlocal ok
        if m["type"] == "http.response.start":
            ok += m["status"] == 200

    for i in range(n):
        path = f"/api/v1/users/{1 + (offset + i) % 5000}"
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"localhost"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 8000),
            "state": dict(state),
        }
        await app(scope, rcv, snd)
    assert ok == n, ok


async def main(mode: str, sink: str, n: int, flag: str) -> None:
    # Under valgrind a window lasts far longer than in real time: the processor's 5 s timer would post a
    # small batch several times in it. Only the 512-span batches (and the final flush for "all") then.
    os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "600000"
    settings = Settings(database_url=os.environ["DATABASE_URL"], pool_min_size=1, pool_max_size=2)
    if mode == "0pct":  # tracing on, nothing sampled: the unsampled path's own cost
        os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_always_off"
    if mode == "1pct":
        os.environ["OTEL_TRACES_SAMPLER"] = "parentbased_traceidratio"
        os.environ["OTEL_TRACES_SAMPLER_ARG"] = "0.01"
    if mode not in ("off", "unnamed"):
        settings = settings.with_overrides(otel_exporter_otlp_endpoint=sink)
    registry = None
    if mode == "unnamed":  # tracing off, the lookup sent as the unnamed statement: that path's own cost
        loaded = Registry.load(settings.sql_dir)
        stmts = {name: loaded[name] for name in loaded}
        stmts["users.get_by_id"] = dataclasses.replace(stmts["users.get_by_id"], plan_cache=PlanCache.CUSTOM)
        registry = Registry(stmts)
    app = create_app(settings, registry=registry)
    gc.collect()
    gc.freeze()  # as `datasvc serve` does after create_app
    state, q_in, q_out, task = await started(app)
    await batch(app, state, 300, 0)
    tracing = getattr(app.state, "tracing", None)
    if tracing is not None:
        tracing.provider.force_flush()
    await asyncio.to_thread(_handshake, flag + ".ready", flag + ".go")
    await batch(app, state, n, 300)
    if tracing is not None and mode == "all":  # batches of 512 spans posted: what a steady load costs
        tracing.provider.force_flush()
    await asyncio.to_thread(_handshake, flag + ".done", flag + ".end")
    await q_in.put({"type": "lifespan.shutdown"})
    await q_out.get()
    await task


def _handshake(mine: str, theirs: str) -> None:
    """Say where the driver is (a file), then wait for the controller's answer (another)."""
    Path(mine).touch()
    while not os.path.exists(theirs):
        time.sleep(0.05)


if __name__ == "__main__":
    import uvloop

    uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
