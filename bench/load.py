"""Running the load generators (wrk over loopback, pgbench) and the psql chores around them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LUA = HERE / "lua"
INSTALL_WRK = "wrk is not installed: apt-get update && apt-get install -y wrk"
_RESULT = re.compile(r"^RESULT (.*)$", re.M)
_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_TPS = re.compile(r"tps = ([\d.]+) \(without initial connection time\)")
_FAILED = re.compile(r"number of failed transactions: (\d+)")


@dataclass(frozen=True, kw_only=True)
class Load:
    """How hard and how long: the same for every target of a run."""

    n: int
    duration: int
    warmup: int
    conns: int
    threads: int
    timeout: str = "30s"
    cpus: str | None = None  # the CPUs wrk and pgbench run on (--pin), as taskset takes them; None: any


def pinned(cpus: str | None, argv: list[str]) -> list[str]:
    """``argv`` run on ``cpus`` only (``taskset -c``, util-linux); unchanged for None."""
    return ["taskset", "-c", cpus, *argv] if cpus else argv


def split_cpus(cpus: set[int]) -> tuple[str, str]:
    """``--pin``: the first half of ``cpus`` for the service under test, the other half for the load.

    On a 2-core machine wrk otherwise shares a core with the service it measures, and the scheduler's
    hand-offs between the two moved the figures by more than a pooler's cost (3-5x the service's context
    switches through PgBouncer, docs/benchmarks.md); pinned, the service has its core, as on a host of its
    own.
    """
    ordered = sorted(cpus)
    if len(ordered) < 2:
        raise ValueError(f"--pin needs at least 2 CPUs, this process may use {len(ordered)}")
    half = len(ordered) // 2
    return ",".join(map(str, ordered[:half])), ",".join(map(str, ordered[half:]))


def require_tools() -> None:
    if shutil.which("wrk") is None:
        sys.exit(INSTALL_WRK)
    for tool in ("psql", "pgbench"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: apt-get install -y postgresql-client")


def psql(
    url: str, sql: str | None = None, *, file: Path | None = None, variables: dict[str, str] | None = None
) -> str:
    """Run SQL through psql (the seed files use psql variables and meta-commands)."""
    cmd = ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url]
    for k, v in (variables or {}).items():
        cmd += ["-v", f"{k}={v}"]
    cmd += ["-f", str(file)] if file else ["-c", sql or ""]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def wait_db_idle(url: str, limit_s: float = 60.0) -> None:
    """Let statements a finished load run left behind drain before the next measured window."""
    t0 = time.monotonic()
    query = (
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state <> 'idle' "
        "AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    )
    while time.monotonic() - t0 < limit_s:
        if int(psql(url, query).strip()) == 0:
            return
        time.sleep(0.2)
    print(f"warning: database still busy after {limit_s:.0f} s", file=sys.stderr)


def run_wrk(
    load: Load, url: str, lua: str, seconds: int, raw: Path | None, *, tokens: tuple[str, ...] = ()
) -> dict[str, float]:
    """One closed-loop wrk run; the Lua ``done`` hook prints the RESULT line parsed here.

    ``tokens``: bearer tokens the requests carry, one after the other (lua/common.lua).
    """
    cmd = ["wrk", "-t", str(load.threads), "-c", str(load.conns), "-d", f"{seconds}s"]
    cmd += ["--timeout", load.timeout, "--latency", "-s", str(LUA / lua), url]
    cmd = pinned(load.cpus, cmd)
    env = dict(os.environ, BENCH_N=str(load.n), BENCH_TOKENS=",".join(tokens))
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120, check=False)
    if raw:
        raw.write_text(" ".join(cmd) + "\n" + p.stdout + p.stderr)
    m = _RESULT.search(p.stdout)
    if p.returncode != 0 or not m:
        raise RuntimeError(f"wrk failed ({p.returncode}): {p.stdout}{p.stderr}")
    out: dict[str, float] = {}
    for kv in m.group(1).split():
        k, v = kv.split("=")
        out[k] = float(v)
    non2xx = _NON2XX.search(p.stdout)
    out["non2xx"] = int(non2xx.group(1)) if non2xx else 0
    sock = ("err_connect", "err_read", "err_write", "err_timeout")
    out["errors"] = out["non2xx"] + sum(out[k] for k in sock)
    return out


def run_pgbench(
    load: Load,
    url: str,
    script: Path,
    seconds: int,
    log_dir: Path | None,
    *,
    protocol: str = "prepared",
    options: str | None = None,
) -> dict[str, float]:
    """pgbench with the same statement text, ``conns`` clients; p50/p99 from its per-xact log.

    ``protocol`` as the service sends the statements: ``prepared`` (named, asyncpg's cache) or ``extended``
    (unnamed: the ``plan-cache: custom`` statements, planned for their values every time). ``options``:
    session settings for every client, as PGOPTIONS.
    """
    cmd = ["pgbench", "-n", "-c", str(load.conns), "-j", str(load.threads), "-T", str(seconds)]
    cmd += ["-M", protocol, "-D", f"n={load.n}", "-f", str(script)]
    if log_dir:
        cmd += ["-l", f"--log-prefix={log_dir / script.stem}.xact"]
    cmd = pinned(load.cpus, [*cmd, url])
    env = dict(os.environ, PGOPTIONS=options) if options else None
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds + 120, check=False)
    tps = _TPS.search(p.stdout)
    if p.returncode != 0 or not tps:
        raise RuntimeError(f"pgbench failed ({p.returncode}): {p.stdout}{p.stderr}")
    failed = _FAILED.search(p.stdout)
    out: dict[str, float] = {"rps": float(tps.group(1)), "errors": int(failed.group(1)) if failed else 0}
    if log_dir:
        lat: list[int] = []
        for f in log_dir.glob(script.stem + ".xact.*"):
            with f.open() as fh:
                lat.extend(int(line.split()[2]) for line in fh)
            f.unlink()
        lat.sort()
        for q, key in ((0.5, "p50_ms"), (0.99, "p99_ms")):
            out[key] = round(lat[min(len(lat) - 1, int(q * len(lat)))] / 1000, 2) if lat else 0.0
        (log_dir / f"{script.stem}.txt").write_text(" ".join(cmd) + "\n" + p.stdout)
    return out
