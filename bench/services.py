"""The HTTP services under test, each started as a child process and stopped by its own PID."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.load import pinned
from datasvc.settings import PROJECT_ROOT

# The peer (FastAPI + SQLAlchemy) and its seed live next to the project; see ../shared/bench/README.md.
SHARED_BENCH = Path(os.environ.get("BENCH_SHARED_DIR") or PROJECT_ROOT.parent / "shared" / "bench")
_UVICORN = ("--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning")


@dataclass(frozen=True, kw_only=True)
class Service:
    name: str
    argv: list[str]
    port: int
    ready_path: str
    env: dict[str, str] = field(default_factory=dict)
    cwd: Path = PROJECT_ROOT
    is_peer: bool = False
    is_ceiling: bool = False
    # Bearer tokens the clients send (wrk rotates through them, one per request; the smoke request uses
    # the first): for a service with tokens configured.
    tokens: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def datasvc(
    name: str,
    *,
    port: int,
    workers: int,
    database_url: str,
    n: int,
    access_log: bool = True,
    pooler_env: dict[str, str] | None = None,
    tokens: bool = False,
    root: Path = PROJECT_ROOT,
) -> Service:
    """`datasvc serve` as deployed, every production feature (access log included) on.

    One change: offsets up to N are allowed, so the deep offset page is the same request the peer gets and
    the deep cursor can be fetched (the default bound is 100,000; deeper pages are meant for cursors).
    ``pooler_env``: more settings: those of a service behind a transaction pooler (bench/pooler.py), or
    its replicas (bench/replica.py). ``tokens``: authentication on, with `BENCH_CALLERS` configured.
    ``root``: the checkout whose code serves (``--checkout``): its package is imported first.
    """
    auth = {"DATASVC_AUTH_TOKENS": ";".join(BENCH_CALLERS)} if tokens else {}
    return Service(
        name=name,
        argv=[sys.executable, "-m", "datasvc", "serve", "--port", str(port), "--workers", str(workers)],
        port=port,
        ready_path="/health",
        env={
            "DATABASE_URL": database_url,
            "DATASVC_LIST_MAX_OFFSET": str(n),
            "DATASVC_ACCESS_LOG": "on" if access_log else "off",
            **(pooler_env or {}),
            **auth,
            **({"PYTHONPATH": str(root)} if root != PROJECT_ROOT else {}),
        },
        cwd=root,
        tokens=BENCH_TOKENS if tokens else (),
    )


# Four callers with the read scopes and users:write (the write scenarios with tokens): wrk's 32 connections
# rotate through their tokens, so each caller has ~8 requests in flight, inside the per-caller share
# (DATASVC_CALLER_MAX_IN_FLIGHT, 25 by default).
BENCH_TOKENS = tuple(f"bench-token-{i}" for i in range(1, 5))
BENCH_CALLERS = tuple(
    f"bench{i} users:read,users:write,credentials:read {hashlib.sha256(token.encode()).hexdigest()}"
    for i, token in enumerate(BENCH_TOKENS, 1)
)


def ceiling(*, port: int, database_url: str) -> Service:
    bin_dir = Path(sys.executable).parent
    return Service(
        name="ceiling",
        argv=[str(bin_dir / "uvicorn"), "bench.ceiling:app", "--port", str(port), *_UVICORN],
        port=port,
        ready_path="/api/v1/users/1",
        env={"DATABASE_URL": database_url},
        is_ceiling=True,
    )


def peer(*, port: int, database_url: str, shared: Path = SHARED_BENCH) -> Service:
    """The peer as ../shared/bench/run_peer.sh starts it: uvicorn, 1 worker, uvloop, httptools."""
    venv = shared / "peer_seed" / ".venv"
    if not (venv / "bin" / "uvicorn").exists():
        sys.exit(f"the peer's venv is missing: run {shared / 'setup_peer.sh'} (or leave out --targets peer)")
    return Service(
        name="peer",
        argv=[
            str(venv / "bin" / "uvicorn"),
            "app.main:app",
            "--port",
            str(port),
            "--workers",
            "1",
            *_UVICORN,
        ],
        port=port,
        ready_path="/health",
        env={"DATABASE_URL": database_url.replace("postgresql://", "postgresql+asyncpg://", 1)},
        cwd=shared / "peer_seed",
        is_peer=True,
    )


def request(
    url: str, method: str = "GET", body: bytes | None = None, timeout: float = 60, token: str = ""
) -> int:
    """One HTTP request to 127.0.0.1; the status code (an HTTP error status is returned, not raised)."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 (loopback)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@contextmanager
def running(service: Service, log: Path, cpus: str | None = None) -> Iterator[int]:
    """Start the service, wait until it answers, yield its PID; SIGTERM it (then SIGKILL) on the way out.

    ``cpus``: the CPUs the service and its workers run on (``--pin``; taskset execs it, so the PID is the
    service's own).
    """
    env = {**os.environ, **service.env}
    with log.open("wb") as out:
        proc = subprocess.Popen(
            pinned(cpus, service.argv),
            cwd=service.cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                sys.exit(f"{service.name} exited with {proc.returncode} at start-up; see {log}")
            try:
                if request(service.url + service.ready_path, timeout=2) == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                sys.exit(f"{service.name} did not answer {service.ready_path} within 60 s; see {log}")
            time.sleep(0.2)
        yield proc.pid
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # the group this harness created for it
                proc.wait()
