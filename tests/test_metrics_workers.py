"""Issue 9.3: with ``--workers N``, ``/metrics`` reports the whole process group, whichever worker answers.

The test decides which worker serves what: with one worker stopped (SIGSTOP) only the other can accept a
new connection. Worker 1 then answers 5 requests and worker 2 answers 7; every scrape afterwards, on a
fresh connection (so by either worker), must count 12.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from datasvc.settings import Settings
from tests.support.servers import ProcessServer
from tests.support.waits import until_blocking

pytestmark = pytest.mark.slow

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
MISS = (
    "datasvc_http_request_duration_seconds_count",
    (("method", "GET"), ("route", "/api/v1/users/{id}"), ("status", "404")),
)
BY_ID = ("datasvc_db_query_duration_seconds_count", (("statement", "users.get_by_id"), ("target", "primary")))


def _scrape(base_url: str) -> Samples:
    # A new connection each time: any worker may answer.
    r = httpx2.get(base_url + "/metrics", headers={"connection": "close"}, timeout=5)
    assert r.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _workers(supervisor: int) -> list[int]:
    """The uvicorn worker processes of one `datasvc serve` (multiprocessing spawns them)."""
    children = Path(f"/proc/{supervisor}/task/{supervisor}/children").read_text().split()
    return [int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def _misses(base_url: str, n: int) -> None:
    for _ in range(n):
        r = httpx2.get(base_url + "/api/v1/users/987654321", headers={"connection": "close"}, timeout=5)
        assert r.status_code == 404


MISS = (
    "datasvc_http_request_duration_seconds_count",
    (("method", "GET"), ("route", "/api/v1/users/{id}"), ("status", "404")),
)


def test_metrics_of_two_workers_sum_whichever_answers(settings: Settings, tmp_path):
    settings = settings.with_overrides(workers=2, drain_seconds=0.0, pool_min_size=1, pool_max_size=3)
    with ProcessServer(settings, tmp_path / "serve.log") as server:
        assert server.process is not None
        pid = server.process.pid
        until_blocking(lambda: len(_workers(pid)) == 2, timeout=20.0)
        until_blocking(lambda: _scrape(server.base_url).get(("datasvc_workers", ())) == 2, timeout=20.0)
        first, second = _workers(pid)
        for stopped, running_serves in ((first, 7), (second, 5)):
            # Each scrape above may have been answered by either worker; these by one known worker only.
            os.kill(stopped, signal.SIGSTOP)
            try:
                _misses(server.base_url, running_serves)
            finally:
                os.kill(stopped, signal.SIGCONT)

        scrapes = [_scrape(server.base_url) for _ in range(8)]
        counted = [s.get(MISS, 0.0) for s in scrapes]
        pool_max = {s.get(("datasvc_db_pool_max", (("target", "primary"),))) for s in scrapes}
        statement = {
            s.get(
                (
                    "datasvc_db_query_duration_seconds_count",
                    (("statement", "users.get_by_id"), ("target", "primary")),
                )
            )
            for s in scrapes
        }
        server.signal(signal.SIGTERM)
        assert server.wait(20) == 0

    figure = f"8 scrapes of 2 workers (7 + 5 requests): counted {counted}, pool max {pool_max}"
    assert counted == [12.0] * 8, figure
    assert statement == {12.0}, figure
    assert pool_max == {6.0}, figure  # 2 workers x DATASVC_POOL_MAX 3
    print(figure)
