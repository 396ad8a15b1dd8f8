"""The targets with OpenTelemetry tracing on: ``datasvc-1w-traced-1pct`` and ``datasvc-1w-traced-all``; and
``datasvc-1w-unnamed``: tracing off, the lookups sent as the unnamed statement (a sampled one's path).

Both are ``datasvc-1w`` (one worker, access log on) with ``OTEL_EXPORTER_OTLP_ENDPOINT`` set to a sink this
run starts: ``parentbased_traceidratio`` sampling 1 % of the traces (wrk sends no ``traceparent``, so every
request starts its own), or every request (``parentbased_always_on``, the SDK's default). The sink is
``python -m bench.tracing PORT``: it answers every OTLP/HTTP POST with 200 without decoding it, in a process
of its own, so what the figures show is the service's cost of making, batching, encoding and sending its
spans and of the sampled statements' comments, not a collector's.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TARGETS = {"datasvc-1w-traced-1pct": "0.01", "datasvc-1w-traced-all": "1.0"}
# Tracing off, the lookups sent as PostgreSQL's unnamed statement (as a sampled request's are): that
# path's own cost (datasvc/unnamed.py), with no span made.
UNNAMED = "datasvc-1w-unnamed"
_LOOKUPS = ("users/get_by_id.sql", "users/get_by_username.sql", "users/get_by_email.sql")
SCENARIOS = ("by_id", "by_username", "by_email")  # the lookups: where a per-request cost shows most


def env(target: str, endpoint: str) -> dict[str, str]:
    """The settings of ``target``'s service: tracing to ``endpoint``, sampling as the target says."""
    ratio = TARGETS[target]
    sampler = {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint, **(sampler if ratio != "1.0" else {})}


@contextmanager
def unnamed_sql(sql_dir: Path) -> Iterator[dict[str, str]]:
    """The settings of `UNNAMED`'s service: a copy of ``sql_dir`` whose lookups say ``plan-cache: custom``."""
    with tempfile.TemporaryDirectory(prefix="datasvc-unnamed-sql-") as tmp:
        copy = Path(tmp) / "sql"
        shutil.copytree(sql_dir, copy)
        for name in _LOOKUPS:
            path = copy / name
            if path.exists():
                text = path.read_text().replace("-- expect-plan-cache: generic\n", "")
                head, sep, rest = text.partition("\n")
                path.write_text(f"{head}{sep}-- plan-cache: custom\n{rest}")
        yield {"DATASVC_SQL_DIR": str(copy)}


@contextmanager
def sink(port: int) -> Iterator[str]:
    """The OTLP/HTTP sink on 127.0.0.1:``port`` while the block runs; yields its endpoint."""
    process = subprocess.Popen([sys.executable, "-m", "bench.tracing", str(port)])
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(endpoint + "/ready", timeout=1).close()  # noqa: S310 - loopback
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the OTLP sink did not start on port {port}") from None
                time.sleep(0.05)
        yield endpoint
    finally:
        process.terminate()
        process.wait(10)


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the exporter's session reuses its connection

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self._answer()

    def _answer(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _Sink).serve_forever()
