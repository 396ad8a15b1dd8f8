"""``python -m bench.overload``: goodput, latency of successes and liveness as connections grow.

One `datasvc serve` worker (as deployed: access log on, default limits) on the bench database; for each
connection count, wrk runs GET by id closed-loop (wrk ignores ``Retry-After``: the worst caller) while
two probes of our own sample, on their own connections, what a caller sees:

- a GET by id on one keep-alive connection: the latency of the successful answers (wrk's own latency
  figures mix successes with refusals), and the status, type and ``Retry-After`` of the refusals;
- ``GET /health`` on a new connection each time: liveness as an orchestrator's probe sees it.

    BENCH_PORT_BASE=8200 flock /tmp/datasvc-bench.lock .venv/bin/python -m bench.overload \\
        --conns 4,16,64,256,1024 --duration 5 --warmup 2

Prints one table (docs/reliability.md keeps the figures with the command). Goodput is wrk's successful
answers per second; "ok p99" is the probe's. Every load is bounded: WARMUP + DURATION per count.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import http.client
import json
import os
import random
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import load as L
from bench import services
from datasvc.settings import PROJECT_ROOT

HERE = Path(__file__).resolve().parent
# wrk opens all its connections at once as the measured run begins (a new process after the warm-up's):
# a /health probe begun in this first second waits behind up to 1,024 connects and their first requests.
# The steady column leaves those probes out; p99 and max keep them.
OPENING = 1.0
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/datasvc_bench"


@dataclass
class Probe:
    """Samples taken beside wrk: successes' and /health latencies (seconds), refusals seen."""

    ok: list[float] = field(default_factory=list)
    health: list[float] = field(default_factory=list)
    health_at: list[float] = field(default_factory=list)  # when each /health probe began (perf_counter)
    health_failed: int = 0
    refusals: dict[str, int] = field(default_factory=dict)


def _lookups(port: int, n: int, stop: threading.Event, probe: Probe) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while not stop.is_set():
        started = time.perf_counter()
        try:
            conn.request("GET", f"/api/v1/users/{random.randint(1, n)}")  # noqa: S311
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            probe.refusals["connection-error"] = probe.refusals.get("connection-error", 0) + 1
            continue
        seconds = time.perf_counter() - started
        if response.status == 200:
            probe.ok.append(seconds)
            continue
        kind = f"{response.status} {response.getheader('content-type')}"
        with contextlib.suppress(ValueError, KeyError):
            kind += " " + str(json.loads(body)["type"]).rpartition(":")[2]
        kind += " retry-after" if response.getheader("retry-after") else " NO-retry-after"
        probe.refusals[kind] = probe.refusals.get(kind, 0) + 1
        if response.getheader("connection") == "close":
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.close()


def _liveness(port: int, stop: threading.Event, probe: Probe) -> None:
    request = b"GET /health HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n"
    while not stop.is_set():
        started = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                sock.sendall(request)
                answer = sock.recv(4096)
            if not answer.startswith(b"HTTP/1.1 200 "):
                raise OSError(answer[:40])
            probe.health.append(time.perf_counter() - started)
            probe.health_at.append(started)
        except OSError:
            probe.health_failed += 1
        stop.wait(0.05)  # a probe every ~50 ms, as often as a strict orchestrator would over a run


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


@dataclass(frozen=True)
class Row:
    conns: int
    goodput: float
    refused_per_s: float
    errors: int  # socket errors and timeouts of wrk, failed /health probes
    ok_p50_ms: float
    ok_p99_ms: float
    ok_samples: int
    health_p99_ms: float
    health_steady_p99_ms: float  # probes begun once wrk's connections are open (`OPENING` on)
    health_max_ms: float
    refusals_seen: dict[str, int]
    # /health probes over 50 ms: (seconds since the measured load began, milliseconds), to tell a probe
    # caught in wrk's opening burst of connects from a slow loop under steady overload.
    health_slow: list[tuple[float, float]] = field(default_factory=list)


def measure(port: int, conns: int, args: argparse.Namespace) -> Row:
    load = L.Load(n=args.n, duration=args.duration, warmup=args.warmup, conns=conns, threads=min(2, conns))
    url = f"http://127.0.0.1:{port}"
    if args.warmup:
        L.run_wrk(load, url, "by_id.lua", args.warmup, None)
    probe, stop = Probe(), threading.Event()
    threads = [
        threading.Thread(target=_lookups, args=(port, args.n, stop, probe)),
        threading.Thread(target=_liveness, args=(port, stop, probe)),
    ]
    for t in threads:
        t.start()
    began = time.perf_counter()
    try:
        result = L.run_wrk(load, url, "by_id.lua", args.duration, None)
    finally:
        stop.set()
        for t in threads:
            t.join()
    socket_errors = sum(result[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    ok = result["requests"] - result["non2xx"] - socket_errors
    return Row(
        conns=conns,
        goodput=ok / result["duration_s"],
        refused_per_s=result["non2xx"] / result["duration_s"],
        errors=int(socket_errors) + probe.health_failed,
        ok_p50_ms=_p(probe.ok, 0.5),
        ok_p99_ms=_p(probe.ok, 0.99),
        ok_samples=len(probe.ok),
        health_p99_ms=_p(probe.health, 0.99),
        health_steady_p99_ms=_p(
            [h for at, h in zip(probe.health_at, probe.health, strict=True) if at - began >= OPENING], 0.99
        ),
        health_max_ms=max(probe.health, default=float("nan")) * 1000,
        refusals_seen=probe.refusals,
        health_slow=[
            (round(at - began, 2), round(seconds * 1000, 1))
            for at, seconds in zip(probe.health_at, probe.health, strict=True)
            if seconds > 0.05
        ],
    )


def table(name: str, rows: list[Row]) -> str:
    """The markdown table docs/reliability.md keeps: each row against the best goodput of the run."""
    best = max(rows, key=lambda r: r.goodput)
    lines = [
        f"{name}: best goodput {best.goodput:.0f}/s at {best.conns} connections, "
        f"ok p99 {best.ok_p99_ms:.1f} ms",
        "| conns | goodput/s | x best | refused/s | ok p50 ms | ok p99 ms | p99 x at best | /health p99 ms "
        "| /health p99 steady ms | /health max ms | errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.conns} | {r.goodput:.0f} | {r.goodput / best.goodput:.2f} | {r.refused_per_s:.0f} | "
            f"{r.ok_p50_ms:.1f} | {r.ok_p99_ms:.1f} | {r.ok_p99_ms / best.ok_p99_ms:.1f} | "
            f"{r.health_p99_ms:.1f} | {r.health_steady_p99_ms:.1f} | {r.health_max_ms:.1f} | {r.errors} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--conns", default="4,16,64,256,1024")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--n", type=int, default=1_000_000, help="users seeded in the bench database")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_URL))
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for the service (repeat)")
    parser.add_argument(
        "--checkout",
        action="append",
        default=[],
        help="NAME=DIR: also serve from this checkout (its datasvc/, this venv), in the same run",
    )
    args = parser.parse_args()
    L.require_tools()
    port = int(os.environ.get("BENCH_PORT_BASE", "8100")) + 20
    env = dict(kv.split("=", 1) for kv in args.env)
    checkouts = [("this", PROJECT_ROOT), *((n, Path(d)) for n, d in (c.split("=", 1) for c in args.checkout))]
    tables = []
    for name, root in checkouts:
        service = services.datasvc(
            "datasvc-1w", port=port, workers=1, database_url=args.database_url, n=args.n, pooler_env=env
        )
        # `python -m datasvc` imports the package of its working directory first.
        service = dataclasses.replace(service, cwd=root)
        log = Path(tempfile.gettempdir()) / f"bench-overload-{port}-{name}.log"
        rows = []
        with services.running(service, log):
            for conns in (int(c) for c in args.conns.split(",")):
                rows.append(measure(port, conns, args))
                print(json.dumps({"checkout": name, **dataclasses.asdict(rows[-1])}), flush=True)
        tables.append(table(name, rows))
    print("\n\n".join(tables))


if __name__ == "__main__":
    main()
