"""CPU and memory of a process tree, read from /proc (Linux only; ported from ../shared/bench/bench.py)."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path
from types import TracebackType

CLK = os.sysconf("SC_CLK_TCK")
PG_DATADIR = Path(os.environ.get("PG_DATADIR", "/var/lib/postgresql/15/main"))


def _stat_fields(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rfind(")") + 2 :].split()  # fields from #3 (state) on


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    out = [pid]
    for child in children(pid):
        out.extend(tree(child))
    return out


def tree_ticks(pid: int) -> int:
    """CPU ticks of pid, its reaped children and its live descendants."""
    total = 0
    for p in tree(pid):
        try:
            total += sum(int(x) for x in _stat_fields(p)[11:15])  # utime stime cutime cstime
        except OSError:
            continue
    return total


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kb(pid: int) -> int:
    """Resident memory of the whole tree now (a uvicorn supervisor and its workers)."""
    return sum(_status_kb(p, "VmRSS:") for p in tree(pid))


def tree_hwm_kb(pid: int) -> int:
    """Sum of each live process's own peak RSS (VmHWM)."""
    return sum(_status_kb(p, "VmHWM:") for p in tree(pid))


def postmaster_pid() -> int | None:
    try:
        return int((PG_DATADIR / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


class CpuWindow:
    """CPU used over a window, in % of one core: the service tree, PostgreSQL, the pooler (PgBouncer, if
    the service runs behind one), the load generator, and the box's busy share."""

    def __init__(self, service_pid: int | None, pooler_pid: int | None = None) -> None:
        self.service_pid = service_pid
        self.pooler_pid = pooler_pid
        self.pm = postmaster_pid()
        self.result: dict[str, float | None] = {}

    def __enter__(self) -> CpuWindow:
        self.t0 = time.monotonic()
        self.svc0 = tree_ticks(self.service_pid) if self.service_pid else 0
        self.pg0 = tree_ticks(self.pm) if self.pm else 0
        self.pooler0 = tree_ticks(self.pooler_pid) if self.pooler_pid else 0
        self.ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.m0 = machine_ticks()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        wall = time.monotonic() - self.t0
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        m1 = machine_ticks()

        def pct(ticks: int) -> float:
            return round(100.0 * ticks / CLK / wall)

        load = (ch1.ru_utime - self.ch0.ru_utime) + (ch1.ru_stime - self.ch0.ru_stime)
        self.result = {
            "svc_cpu": pct(tree_ticks(self.service_pid) - self.svc0) if self.service_pid else None,
            "pg_cpu": pct(tree_ticks(self.pm) - self.pg0) if self.pm else None,
            "pooler_cpu": pct(tree_ticks(self.pooler_pid) - self.pooler0) if self.pooler_pid else None,
            "load_cpu": round(100.0 * load / wall),
            "box_busy": round(100.0 * (m1[0] - self.m0[0]) / max(1, m1[1] - self.m0[1])),
        }


class RssSampler(threading.Thread):
    """Peak resident memory of a process tree, sampled every ``every`` seconds until stopped."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid, self.every, self.peak_kb = pid, every, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak_kb = max(self.peak_kb, tree_rss_kb(self.pid))
            self.done.wait(self.every)

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak_kb
