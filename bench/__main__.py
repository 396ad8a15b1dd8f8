"""``python -m bench``: load N users, start each service, run the wrk scenarios and pgbench, print tables.

    .venv/bin/python -m bench                          # everything: ~20 min with the default 10 s runs
    .venv/bin/python -m bench --duration 3 --warmup 1 --targets datasvc-1w --scenarios by_id,create
    .venv/bin/python -m bench report bench/results/<run>.json
    .venv/bin/python -m bench --checkout before=../wt-before --targets datasvc-1w,before:datasvc-1w

Targets, all in one run on this machine and over loopback: ``datasvc-1w`` and ``datasvc-2w`` (`datasvc
serve --workers 1|2`, access log on), ``pgbouncer-1.24`` and ``pgbouncer-1.18`` (one worker behind
PgBouncer in transaction mode, bench/pooler.py) and ``direct-app`` (their baseline without PgBouncer),
``replica`` and ``replica-direct`` (one worker on a primary the run starts, with and without its hot
standby in DATASVC_REPLICA_URLS, bench/replica.py),
``ceiling`` (bench/ceiling.py), ``peer`` (the FastAPI + SQLAlchemy service from ../shared/bench, on its
own schema and an identical seed), ``pgbench`` (our statements, bare).
``--checkout NAME=DIR`` adds ``NAME:<target>`` for each of our service's targets: the same, served from
another checkout of the code (``git worktree add --detach DIR <commit>``), so a change is measured against
the code before it in one run. Every load is bounded: WARMUP + DURATION seconds per scenario and target.
See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

from bench import load as L
from bench import pooler, replica, report, services, tracing
from bench.probe import CpuWindow, RssSampler, tree_rss_kb
from bench.scenarios import (
    LIST,
    Scenario,
    deep_id,
    deep_offset,
    fill,
    pgbench_protocol,
    sample_request,
    selected,
    write_pgbench_scripts,
)
from datasvc.connections import server_settings
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT, Settings

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
TARGETS = (
    "datasvc-1w",
    "direct-app",
    "pgbouncer-1.24",
    "pgbouncer-1.18",
    "replica",
    "replica-direct",
    "ceiling",
    "peer",
    "datasvc-2w",
    "pgbench",
)
# Only when asked for: one worker with DATASVC_ACCESS_LOG=off; one worker with tokens configured (clients
# send them); pgbench with the pool's session settings (PGOPTIONS), beside the plain one; PgBouncer 1.24
# reached over its Unix socket; PgBouncer 1.24 and its baseline with four callers' tokens; one worker with
# OpenTelemetry tracing on, sampling 1 % or all requests, and the lookups as the unnamed statement
# (bench/tracing.py).
EXTRA_TARGETS = (
    "datasvc-1w-nolog",
    "datasvc-1w-tokens",
    "pgbench-session",
    "pgbouncer-1.24-socket",
    "direct-app-tokens",
    "pgbouncer-1.24-tokens",
    *tracing.TARGETS,
    tracing.UNNAMED,
)
# BENCH_PORT_BASE moves every port (several people benchmarking on one machine): base + 1 … base + 18.
_BASE = int(os.environ.get("BENCH_PORT_BASE", "8100"))
PORTS = {
    name: _BASE + i
    for i, name in enumerate(
        (
            "datasvc-1w",
            "datasvc-2w",
            "ceiling",
            "peer",
            "datasvc-1w-nolog",
            "pgbouncer-1.24",
            "pgbouncer-1.18",
            "direct-app",
            "replica",
            "replica-direct",
            "datasvc-1w-tokens",
            "pgbouncer-1.24-socket",
            "direct-app-tokens",
            "pgbouncer-1.24-tokens",
            *tracing.TARGETS,
            "otlp-sink",
            tracing.UNNAMED,
        ),
        1,
    )
}


# Targets served by our service, which another checkout can serve too (``--checkout``).
CHECKOUT_TARGETS = tuple(
    t for t in TARGETS + EXTRA_TARGETS if t not in ("ceiling", "peer", "pgbench", "pgbench-session")
)
MAX_CHECKOUTS = 4  # their ports: base + 20·k + the target's own offset, below the next person's base


def _csv(raw: str) -> list[str]:
    return [x.strip() for x in raw.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    env = os.environ.get
    p = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("command", nargs="?", choices=["run", "report"], default="run")
    p.add_argument("files", nargs="*", type=Path, help="report: result JSON files")
    p.add_argument("-n", "--rows", type=int, default=int(env("BENCH_N", "1000000")), help="users to load")
    p.add_argument("--duration", type=int, default=int(env("DURATION", "10")), help="measured s per run")
    p.add_argument("--warmup", type=int, default=int(env("WARMUP", "3")), help="discarded s before each")
    p.add_argument("--conns", type=int, default=int(env("CONNS", "32")))
    p.add_argument("--threads", type=int, default=int(env("THREADS", "1")))
    p.add_argument(
        "--pooler-pool",
        type=int,
        default=int(env("BENCH_POOLER_POOL", "10")),
        help="behind PgBouncer: its server connections (default_pool_size); the direct targets keep 10",
    )
    p.add_argument(
        "--pooler-clients",
        type=int,
        default=int(env("BENCH_POOLER_CLIENTS", "0")),
        help="behind PgBouncer: the service's pool, PgBouncer's clients (0: as many as wrk's --conns)",
    )
    p.add_argument(
        "--rounds",
        type=int,
        default=int(env("ROUNDS", "1")),
        help="measure every target this many times per scenario, in turn; the report gives medians",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        default=env("BENCH_PIN", "") == "1",
        help="each service on the first half of the CPUs, wrk and pgbench on the other half (PostgreSQL "
        "and PgBouncer run where the kernel puts them)",
    )
    p.add_argument(
        "--targets",
        type=_csv,
        default=_csv(env("TARGETS", ",".join(TARGETS))),
        help=f"comma list of {', '.join(TARGETS + EXTRA_TARGETS)}",
    )
    p.add_argument(
        "--scenarios", type=_csv, default=_csv(env("SCENARIOS", "")), help="comma list (default all)"
    )
    p.add_argument(
        "--server",
        default=env("BENCH_SERVER_URL", "postgresql://postgres@127.0.0.1:5432"),
        help="PostgreSQL server URL, without a database name",
    )
    p.add_argument("--database", default=env("BENCH_DATABASE", "datasvc_bench"))
    p.add_argument("--peer-database", default=env("BENCH_PEER_DATABASE", "datasvc_bench_peer"))
    p.add_argument("--reseed", action="store_true", help="reload the rows even if the count is right")
    p.add_argument(
        "--checkout",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="another checkout of the code: targets NAME:<target> are served from DIR in the same run",
    )
    args = p.parse_args(argv)
    args.checkouts = {}
    for entry in args.checkout:
        name, _, path = entry.partition("=")
        if not name or ":" in name or not (Path(path) / "datasvc" / "__init__.py").exists():
            p.error(f"--checkout {entry}: give NAME=DIR, DIR a checkout of datasvc")
        args.checkouts[name] = Path(path).resolve()
    if len(args.checkouts) > MAX_CHECKOUTS:
        p.error(f"at most {MAX_CHECKOUTS} --checkout")
    known = TARGETS + EXTRA_TARGETS + tuple(f"{n}:{t}" for n in args.checkouts for t in CHECKOUT_TARGETS)
    if bad := [t for t in args.targets if t not in known]:
        p.error(f"unknown target(s) {', '.join(bad)}; choose from {', '.join(TARGETS + EXTRA_TARGETS)}")
    try:
        args.selected = selected(args.scenarios)
        args.pooler_clients = args.pooler_clients or args.conns
        args.service_cpus, args.load_cpus = (
            L.split_cpus(os.sched_getaffinity(0)) if args.pin else (None, None)
        )
    except ValueError as exc:
        p.error(str(exc))
    return args


# ---------------------------------------------------------------------------------------------- data
def ensure_database(server: str, name: str) -> str:
    url = f"{server}/{name}"
    exists = L.psql(
        f"{server}/postgres", file=HERE / "sql" / "has_database.sql", variables={"name": name}
    ).strip()
    if not exists:
        subprocess.run(["createdb", f"--maintenance-db={server}/postgres", name], check=True)
        print(f"created database {name}")
    return url


def prepare_ours(url: str, n: int, reseed: bool) -> None:
    """Our schema through our migrations, then N deterministic rows (bench/seed.sql) unless already there."""
    subprocess.run(
        [sys.executable, "-m", "datasvc", "migrate"],
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        stdout=subprocess.DEVNULL,
    )
    rows = int(L.psql(url, file=HERE / "sql" / "rows.sql").strip())
    if reseed or rows != n:
        print(f"loading {n:,} users into {url} (had {rows:,}) ...", flush=True)
        L.psql(url, file=HERE / "seed.sql", variables={"n": str(n)})


def prepare_peer(url: str, n: int, reseed: bool) -> None:
    """The peer's own schema and the same rows, with ../shared/bench's schema.sql and seed_data.sql."""
    rows = int(L.psql(url, file=HERE / "sql" / "rows.sql").strip())
    if reseed or rows != n:
        print(f"loading {n:,} users into {url} for the peer (had {rows:,}) ...", flush=True)
        L.psql(url, file=services.SHARED_BENCH / "schema.sql")
        L.psql(url, file=services.SHARED_BENCH / "seed_data.sql", variables={"n": str(n)})


def cleanup(url: str, n: int) -> None:
    L.psql(url, file=HERE / "sql" / "cleanup.sql", variables={"n": str(n)})


# ---------------------------------------------------------------------------------------------- runs
def smoke(
    service: services.Service, scenarios: list[Scenario], paths: dict[str, str], n: int, db: str
) -> None:
    """One request per scenario before any load: a wrong URL or seed fails in a second, not in a table."""
    for s in scenarios:
        method, path, body = sample_request(s, n, peer=service.is_peer)
        token = service.tokens[0] if service.tokens else ""
        status = services.request(service.url + (paths[s.key] or path), method, body, token=token)
        if not 200 <= status < 300:
            sys.exit(f"{service.name}: {method} {path} answered {status}; is the seed/API as expected?")
        if s.writes:
            cleanup(db, n)


def static_paths(service: services.Service, scenarios: list[Scenario], n: int) -> dict[str, str]:
    """The fixed URL of each list scenario, with the deep cursor asked from the running service."""
    cursor = ""
    if not service.is_peer and any("{cursor}" in s.path for s in scenarios):
        url = service.url + LIST + f"&count=none&offset={deep_offset(n)}"
        with urllib.request.urlopen(url, timeout=120) as resp:  # noqa: S310 (loopback)
            cursor = json.loads(resp.read())["next_cursor"]
    return {s.key: fill((s.peer_path or "") if service.is_peer else s.path, n, cursor) for s in scenarios}


def _load(args: argparse.Namespace) -> L.Load:
    return L.Load(
        n=args.rows,
        duration=args.duration,
        warmup=args.warmup,
        conns=args.conns,
        threads=args.threads,
        cpus=args.load_cpus,
    )


def http_target(
    service: services.Service,
    scenarios: list[Scenario],
    args: argparse.Namespace,
    db_url: str,
    raw: Path,
    *,
    pooler_pid: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Load ``service`` with each scenario in turn; ``pooler_pid``: the PgBouncer it runs behind, if any."""
    load = _load(args)
    rows = []
    log = raw / f"{service.name}-{'+'.join(s.key for s in scenarios)}.log"
    with services.running(service, log, args.service_cpus) as pid:
        paths = static_paths(service, scenarios, args.rows)
        smoke(service, scenarios, paths, args.rows, db_url)
        idle = tree_rss_kb(pid)
        sampler = RssSampler(pid)
        sampler.start()
        for s in scenarios:
            url = service.url + paths[s.key]
            if args.warmup:
                L.run_wrk(load, url, s.lua, args.warmup, None, tokens=service.tokens)
                L.wait_db_idle(db_url)
            start = log.stat().st_size
            with CpuWindow(pid, pooler_pid) as cpu:
                r = L.run_wrk(
                    load,
                    url,
                    s.lua,
                    args.duration,
                    raw / f"{service.name}-{s.key}.txt",
                    tokens=service.tokens,
                )
            L.wait_db_idle(db_url)
            failed = _failed_statuses(log, start)
            rows.append({"target": service.name, "scenario": s.key, **r, **cpu.result, "statuses": failed})
            print(
                f"[{service.name:10s}] {s.key:22s} {r['rps']:9.1f} req/s  p50 {r['p50_ms']:8.2f} ms  "
                f"p99 {r['p99_ms']:8.2f} ms  errors {int(r['errors'])}  cpu svc/pg {cpu.result['svc_cpu']}/"
                f"{cpu.result['pg_cpu']}%",
                flush=True,
            )
            if s.writes:
                cleanup(db_url, args.rows)
        rss = {"idle_kb": idle, "peak_kb": sampler.stop(), "hwm_kb": _hwm(pid)}
    _trim(log)
    return rows, rss


def _hwm(pid: int) -> int:
    from bench.probe import tree_hwm_kb

    return tree_hwm_kb(pid)


_STATUS = re.compile(rb'"status":\s*([3-5]\d\d)')


def _failed_statuses(log: Path, start: int) -> dict[str, int]:
    """Non-2xx statuses in the access log written since byte ``start``: what the errors column holds."""
    counts: dict[str, int] = {}
    with log.open("rb") as f:
        f.seek(start)
        for code in _STATUS.findall(f.read()):
            counts[code.decode()] = counts.get(code.decode(), 0) + 1
    return counts


def _trim(log: Path, keep: int = 200) -> None:
    """The access log of a run is hundreds of MB; keep its tail (enough to see errors at the end)."""
    if log.exists() and log.stat().st_size > 1 << 20:
        with log.open("rb") as f:
            f.seek(-64 * 1024, os.SEEK_END)
            tail = f.read().splitlines()[-keep:]
        log.write_bytes(b"[trimmed by bench: last lines only]\n" + b"\n".join(tail) + b"\n")


def pgbench_target(
    scenarios: list[Scenario], args: argparse.Namespace, db_url: str, raw: Path, *, session: bool = False
) -> list[dict[str, Any]]:
    """pgbench with each scenario's statements; ``session``: with the pool's session settings (PGOPTIONS),
    as every pooled connection has them (`datasvc.connections.server_settings`): ``pgbench-session``."""
    name = "pgbench-session" if session else "pgbench"
    options = pgoptions(server_settings(Settings.from_env())) if session else None
    load = _load(args)
    key = L.psql(
        db_url, file=HERE / "sql" / "deep_key.sql", variables={"id": str(deep_id(args.rows))}
    ).strip()
    registry = Registry.load(PROJECT_ROOT / "sql")
    scripts = write_pgbench_scripts(scenarios, registry, raw / "pgbench", n=args.rows, deep_key=key)
    (raw / name).mkdir(exist_ok=True)
    rows = []
    for s in scenarios:
        if s.key not in scripts:
            continue
        protocol = pgbench_protocol(s, registry)
        if args.warmup:
            L.run_pgbench(load, db_url, scripts[s.key], args.warmup, None, protocol=protocol, options=options)
            L.wait_db_idle(db_url)
        with CpuWindow(None) as cpu:
            r = L.run_pgbench(
                load, db_url, scripts[s.key], args.duration, raw / name, protocol=protocol, options=options
            )
        L.wait_db_idle(db_url)
        rows.append({"target": name, "scenario": s.key, **r, **cpu.result})
        print(
            f"[{name:10s}] {s.key:22s} {r['rps']:9.1f} tps    p50 {r['p50_ms']:8.2f} ms  "
            f"p99 {r['p99_ms']:8.2f} ms  errors {int(r['errors'])}  cpu pg {cpu.result['pg_cpu']}%",
            flush=True,
        )
        if s.writes:
            cleanup(db_url, args.rows)
    return rows


def pgoptions(settings: dict[str, str]) -> str:
    """Session settings as libpq's PGOPTIONS (``-c name=value``; spaces in a value escaped)."""
    return " ".join(f"-c {k}={v.replace(' ', chr(92) + ' ')}" for k, v in settings.items())


def _git(*argv: str) -> str:
    """The code under test, for the record (empty outside a git checkout)."""
    p = subprocess.run(["git", *argv], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False)
    return p.stdout.strip()


def port_of(target: str, args: argparse.Namespace) -> int:
    """The port a target serves on; ``NAME:<target>`` (``--checkout``) on one of its checkout's own."""
    name, _, base = target.rpartition(":")
    shift = 20 * (list(args.checkouts).index(name) + 1) if name else 0
    return PORTS[base] + shift


def _git_at(root: Path) -> str:
    """A checkout's commit, for the record."""
    p = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True)
    return p.stdout.strip() or str(root)


def plan_target(
    target: str,
    args: argparse.Namespace,
    ours: str,
    peer_url: str | None,
    *,
    label: str | None = None,
    root: Path = PROJECT_ROOT,
) -> tuple[services.Service, str, list[Scenario]]:
    """The service a target names, the database it uses, and the scenarios it takes part in.

    ``label``: the name it is reported under (``NAME:<target>`` when ``root`` is another checkout).
    """
    if target == "peer":
        assert peer_url is not None
        return (
            services.peer(port=PORTS[target], database_url=peer_url),
            peer_url,
            [s for s in args.selected if s.for_peer()],
        )
    if target == "ceiling":
        svc = services.ceiling(port=PORTS[target], database_url=ours)
        return svc, ours, [s for s in args.selected if s.ceiling]
    svc = services.datasvc(
        label or target,
        port=port_of(label or target, args),
        workers=2 if target == "datasvc-2w" else 1,
        database_url=ours,
        n=args.rows,
        access_log=not target.endswith("-nolog"),
        tokens=target.endswith("-tokens"),
        root=root,
    )
    scenarios = list(args.selected)
    if target.endswith("-nolog"):  # the log's cost shows on cheap requests; lists cost the database
        scenarios = [s for s in scenarios if not s.key.startswith("list_")]
    return svc, ours, scenarios


def run(args: argparse.Namespace) -> Path:
    L.require_tools()
    started = dt.datetime.now(dt.UTC)
    tag = started.strftime("%Y%m%dT%H%M%SZ")
    raw = RESULTS / tag
    raw.mkdir(parents=True, exist_ok=True)
    ours = ensure_database(args.server, args.database)
    prepare_ours(ours, args.rows, args.reseed)
    cleanup(ours, args.rows)  # vacuumed and analyzed: both services start from the same kind of table
    peer_url = None
    if "peer" in args.targets:
        peer_url = ensure_database(args.server, args.peer_database)
        prepare_peer(peer_url, args.rows, args.reseed)
        cleanup(peer_url, args.rows)
    meta = {
        "started": started.isoformat(timespec="seconds"),
        "n": args.rows,
        "duration": args.duration,
        "warmup": args.warmup,
        "conns": args.conns,
        "threads": args.threads,
        "rounds": args.rounds,
        "pooler_pool": args.pooler_pool,
        "pooler_clients": args.pooler_clients,
        "pin": {"service": args.service_cpus, "load": args.load_cpus} if args.pin else None,
        "targets": args.targets,
        "checkouts": {name: _git_at(path) for name, path in args.checkouts.items()},
        "nproc": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "uncommitted_files": len(_git("status", "--porcelain", "--untracked-files=no").splitlines()),
    }
    results: list[dict[str, Any]] = []
    rss: dict[str, dict[str, int]] = {}
    # Scenario by scenario, every target in turn, each started afresh: the figures compared with each other
    # are taken seconds apart, not minutes, on a machine whose other load comes and goes; and only one
    # service holds database connections at a time. With --rounds R the targets take R turns in a row: a
    # ratio is then taken round by round (neighbours in time) and the report gives the median.
    # The replica targets' primary and standby are made once (seeding N users takes a while).
    pair_ctx = contextlib.ExitStack()
    pair = None
    if any(t.rpartition(":")[2] in replica.TARGETS for t in args.targets):
        pair = pair_ctx.enter_context(replica.started(args.rows))
    for s in args.selected:
        for round_no in range(args.rounds):
            # Every other round in reverse: a target that always ran second would always inherit what the
            # first left behind (its dirty pages, the caches), and every ratio would carry that.
            for target in args.targets if round_no % 2 == 0 else args.targets[::-1]:
                rows, used = measure(target, s, args, ours, peer_url, pair, raw)
                results += [{**row, "round": round_no} for row in rows]
                if used is not None:
                    seen = rss.setdefault(target, used)
                    seen["idle_kb"] = min(seen["idle_kb"], used["idle_kb"])
                    seen["peak_kb"] = max(seen["peak_kb"], used["peak_kb"])
                    seen["hwm_kb"] = max(seen["hwm_kb"], used["hwm_kb"])
    pair_ctx.close()
    meta["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    meta["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    out = RESULTS / f"{tag}.json"
    out.write_text(json.dumps({"meta": meta, "results": results, "rss": rss}, indent=1))
    return out


def measure(
    target: str,
    s: Scenario,
    args: argparse.Namespace,
    ours: str,
    peer_url: str | None,
    pair: replica.Pair | None,
    raw: Path,
) -> tuple[list[dict[str, Any]], dict[str, int] | None]:
    """One target on one scenario, started afresh: its rows, and its memory (None: not a service of ours)."""
    label = target
    checkout, _, target = label.rpartition(":")
    root = args.checkouts[checkout] if checkout else PROJECT_ROOT
    if target in ("pgbench", "pgbench-session"):
        return pgbench_target([s], args, ours, raw, session=target == "pgbench-session"), None
    if target in pooler.TARGETS:
        if s.key not in pooler.scenarios(target):
            return [], None
        # By default as many client connections as requests in flight: they wait in PgBouncer's queue for
        # one of its server connections (as many as the direct targets' pool), not in the service's.
        with pooler.started(target, args.server, args.database, args.pooler_pool, args.pooler_clients) as via:
            svc = services.datasvc(
                label,
                port=port_of(label, args),
                workers=1,
                database_url=via.url,
                n=args.rows,
                pooler_env=via.env,
                tokens=target.endswith("-tokens"),
                root=root,
            )
            return http_target(svc, [s], args, ours, raw, pooler_pid=via.pooler_pid)
    if target in tracing.TARGETS:
        if s.key not in tracing.SCENARIOS:
            return [], None
        with tracing.sink(PORTS["otlp-sink"]) as endpoint:
            svc = services.datasvc(
                target,
                port=PORTS[target],
                workers=1,
                database_url=ours,
                n=args.rows,
                pooler_env=tracing.env(target, endpoint),
            )
            return http_target(svc, [s], args, ours, raw)
    if target == tracing.UNNAMED:
        if s.key not in tracing.SCENARIOS:
            return [], None
        with tracing.unnamed_sql(PROJECT_ROOT / "sql") as env:
            svc = services.datasvc(
                target, port=PORTS[target], workers=1, database_url=ours, n=args.rows, pooler_env=env
            )
            return http_target(svc, [s], args, ours, raw)
    if target in replica.TARGETS:
        if s.key not in replica.SCENARIOS:
            return [], None
        assert pair is not None
        svc = services.datasvc(
            label,
            port=port_of(label, args),
            workers=1,
            database_url=pair.primary_url,
            n=args.rows,
            pooler_env=pair.env(target),
            root=root,
        )
        return http_target(svc, [s], args, pair.primary_url, raw)
    svc, db, takes_part = plan_target(target, args, ours, peer_url, label=label, root=root)
    if s not in takes_part:
        return [], None
    return http_target(svc, [s], args, db, raw)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.command == "report":
        for f in args.files:
            print(report.render(json.loads(f.read_text())))
        return 0
    out = run(args)
    print()
    print(report.render(json.loads(out.read_text())))
    raw = out.with_suffix("").relative_to(PROJECT_ROOT)
    print(f"saved {out.relative_to(PROJECT_ROOT)}; raw wrk/pgbench output and service logs in {raw}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
