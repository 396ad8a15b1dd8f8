"""The export and the change feed at scale, beside their baselines, in one run.

    flock /tmp/datasvc-bench.lock env BENCH_PORT_BASE=8600 .venv/bin/python -m bench.feed \\
        [--database datasvc_bench] [--feed-database feed_bench] [--only export,feed]

Export (on ``--database``, the benchmark's 1M users; read only):
- rows/s of `GET /api/v1/users/export` read by curl into /dev/null, against psql's
  ``COPY (SELECT json_build_object(…the same columns…)) TO STDOUT`` of the same rows;
- NDJSON and CSV read by this process: row count and a checksum (md5 over ``id:email`` lines in id
  order) equal to the table's, and the service's RSS growth meanwhile (/proc, sampled every 50 ms);
- GET by id p99 (one client, sequential, 5 s) alone, then while exports run back to back.

Feed (on ``--feed-database``, a migrated database of its own with users in it: it writes):
- 100,000 changes (10 UPDATE transactions of 10,000 users) consumed with ``limit=1000``: changes/s;
- 10 writers x 1,000 single-row inserts while one consumer follows (``wait=1``): all 10,000, each once;
- long-poll latency from a write to the waiting request's answer, p50/p99: a write through the service
  (it notifies) and a write made with psql (found by the waiters' poll).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import orjson
import psycopg

from bench.services import datasvc, running

PORT = int(os.environ.get("BENCH_PORT_BASE", "8100")) + 1
COPY = (
    "COPY (SELECT json_build_object('id', id, 'email', email, 'username', username, 'full_name', full_name, "
    "'bio', bio, 'status', status, 'is_verified', is_verified, 'is_admin', is_admin, 'created_at', "
    "created_at, 'updated_at', updated_at) FROM users ORDER BY id) TO STDOUT"
)
TABLE_SUM = "SELECT count(*), md5(string_agg(id::text || ':' || email, E'\\n' ORDER BY id)) FROM users"


def url_of(database: str) -> str:
    return f"postgresql://postgres@127.0.0.1:5432/{database}"


@contextmanager
def service(database: str, log: Path) -> Iterator[tuple[str, int]]:
    svc = datasvc("datasvc-feed", port=PORT, workers=1, database_url=url_of(database), n=0, access_log=False)
    with running(svc, log) as pid:
        yield svc.url, pid


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


@contextmanager
def rss_peak(pid: int) -> Iterator[list[int]]:
    """Yields [baseline, peak] KiB of ``pid``'s RSS, sampled every 50 ms until the block ends."""
    seen = [rss_kib(pid), rss_kib(pid)]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            seen[1] = max(seen[1], rss_kib(pid))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def checksum(lines: Iterator[str]) -> tuple[int, str]:
    digest = hashlib.md5()  # noqa: S324 - a checksum, not security
    count = 0
    for line in lines:
        digest.update(f"{chr(10) if count else ''}{line}".encode())
        count += 1
    return count, digest.hexdigest()


def ndjson_ids(base: str) -> Iterator[str]:
    with httpx2.stream("GET", base + "/api/v1/users/export", timeout=600) as response:
        for line in response.iter_lines():
            if line:
                row = orjson.loads(line)
                yield f"{row['id']}:{row['email']}"


def csv_ids(base: str) -> Iterator[str]:
    with httpx2.stream(
        "GET", base + "/api/v1/users/export", headers={"Accept": "text/csv"}, timeout=600
    ) as r:
        text = io.StringIO(newline="")
        for chunk in r.iter_text():
            text.write(chunk)
        text.seek(0)
        for row in csv.DictReader(text):
            yield f"{row['id']}:{row['email']}"


def lookups(base: str, seconds: float, top: int) -> list[float]:
    out = []
    with httpx2.Client(base_url=base, timeout=30) as client:
        deadline = time.monotonic() + seconds
        i = 0
        while time.monotonic() < deadline:
            i += 1
            started = time.perf_counter()
            assert client.get(f"/api/v1/users/{1 + i * 7919 % top}").status_code == 200
            out.append(time.perf_counter() - started)
    return out


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def export(database: str, log: Path) -> None:
    with psycopg.connect(url_of(database)) as conn:
        table = conn.execute(TABLE_SUM).fetchone()
        top = conn.execute("SELECT max(id) FROM users").fetchone()
    assert table is not None
    assert top is not None
    rows = table[0]
    print(f"export: {rows} users in {database}")
    with service(database, log) as (base, pid):
        curl = ["curl", "-sf", "-o", "/dev/null", base + "/api/v1/users/export"]
        for round_ in range(2):
            copy = timed(["psql", "-X", "-q", "-d", url_of(database), "-c", COPY])
            with rss_peak(pid) as rss:
                ours = timed(curl)
            print(
                f"  round {round_ + 1}: psql COPY {rows / copy:,.0f} rows/s, export NDJSON via curl "
                f"{rows / ours:,.0f} rows/s: {copy / ours:.2f}x COPY; RSS +{(rss[1] - rss[0]) / 1024:.1f} MiB"
            )
        for name, reader in (("NDJSON", ndjson_ids), ("CSV", csv_ids)):
            with rss_peak(pid) as rss:
                got = checksum(reader(base))
            same = "equal" if got == (table[0], table[1]) else f"DIFFERENT {got} vs {table}"
            print(
                f"  {name}: {got[0]} rows, checksum {same} to the table's; "
                f"RSS +{(rss[1] - rss[0]) / 1024:.1f} MiB"
            )
        alone = lookups(base, 5, top[0])
        stop = threading.Event()

        def exports() -> None:
            while not stop.is_set():
                subprocess.run(curl, check=False)

        runner = threading.Thread(target=exports, daemon=True)
        runner.start()
        time.sleep(0.5)  # the export under way before the clock starts
        during = lookups(base, 5, top[0])
        stop.set()
        runner.join()
        print(
            f"  GET by id p99 alone {p99(alone) * 1000:.2f} ms ({len(alone)} requests), during an export "
            f"{p99(during) * 1000:.2f} ms ({len(during)}): {p99(during) / p99(alone):.2f}x"
        )


def follow(client: httpx2.Client, cursor: str | None, **params: str) -> tuple[list[dict[str, object]], str]:
    query = {**params, **({"after": cursor} if cursor else {})}
    page = client.get("/api/v1/users/changes", params=query).raise_for_status().json()
    return page["items"], page["next_cursor"]


def feed(database: str, log: Path) -> None:
    url = url_of(database)
    with psycopg.connect(url) as conn:
        low = conn.execute("SELECT min(id) FROM users").fetchone()
    assert low is not None
    first = low[0] - 1
    with service(database, log) as (base, _), httpx2.Client(base_url=base, timeout=60) as client:
        _, start = follow(client, None, **{"from": "now"})
        with psycopg.connect(url, autocommit=True) as conn:
            for k in range(10):
                conn.execute(
                    "UPDATE users SET bio = %s WHERE id > %s AND id <= %s",
                    (f"feed bench {k}", first + k * 10000, first + (k + 1) * 10000),
                )
        consumed, cursor = 0, start
        started = time.perf_counter()
        while True:
            items, cursor = follow(client, cursor, limit="1000")
            consumed += len(items)
            if not items:
                break
        elapsed = time.perf_counter() - started
        print(
            f"feed: {consumed} changes with limit=1000 in {elapsed:.2f} s: "
            f"{consumed / elapsed:,.0f} changes/s"
        )

        _, start = follow(client, None, **{"from": "now"})
        tag = f"fb{int(time.time())}"

        def write(n: int) -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                for i in range(1000):
                    conn.execute(
                        "INSERT INTO users (email, username, hashed_password) VALUES (%s, %s, %s)",
                        (f"{tag}{n}_{i}@x.example", f"{tag}{n}_{i}", "$2b$12$" + "a" * 53),
                    )

        writers = [threading.Thread(target=write, args=(n,)) for n in range(10)]
        for w in writers:
            w.start()
        seen: list[tuple[object, object]] = []
        cursor = start
        while len(seen) < 10000 or any(w.is_alive() for w in writers):
            items, cursor = follow(client, cursor, limit="1000", wait="1")
            seen += [(i["id"], i["version"]) for i in items]
            if not items and not any(w.is_alive() for w in writers):
                break
        print(f"  10 writers x 1000 inserts, one consumer: {len(seen)} changes, {len(set(seen))} distinct")

        for how in ("service", "psql"):
            latencies = []
            with psycopg.connect(url, autocommit=True) as conn:
                for i in range(40):
                    _, cursor = follow(client, None, **{"from": "now"})
                    answered: list[float] = []

                    def wait(cursor: str = cursor, answered: list[float] = answered) -> None:
                        with httpx2.Client(base_url=base, timeout=60) as waiter:
                            follow(waiter, cursor, wait="10")
                        answered.append(time.perf_counter())

                    waiter = threading.Thread(target=wait)
                    waiter.start()
                    time.sleep(0.2)  # the request is waiting by now
                    if how == "service":
                        client.patch(
                            f"/api/v1/users/{first + 1 + i}", json={"bio": f"lat {i}"}
                        ).raise_for_status()
                    else:
                        conn.execute("UPDATE users SET bio = %s WHERE id = %s", (f"lat {i}", first + 1 + i))
                    committed = time.perf_counter()
                    waiter.join()
                    latencies.append(answered[0] - committed)
            q = statistics.quantiles(latencies, n=100)
            print(
                f"  long poll, write through the {how}: commit to answer p50 "
                f"{statistics.median(latencies) * 1000:.0f} ms, p99 {q[98] * 1000:.0f} ms "
                f"({len(latencies)} writes)"
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--database", default="datasvc_bench")
    p.add_argument("--feed-database", default="feed_bench")
    p.add_argument("--only", default="export,feed")
    args = p.parse_args()
    logs = Path(tempfile.mkdtemp(prefix="bench-feed-"))
    if "export" in args.only:
        export(args.database, logs / "export.log")
    if "feed" in args.only:
        feed(args.feed_database, logs / "feed.log")
    print(f"logs: {logs}", file=sys.stderr)


if __name__ == "__main__":
    main()
