"""The access log: one JSON line per request, built on the request path and written off it.

The stdlib ``logging`` machinery (a record, a handler lock, a formatter and one ``write`` per line) is a
large share of a lookup's own CPU (docs/benchmarks.md). Here a request builds its line with one
``orjson.dumps`` and appends it to a bounded deque; a writer thread wakes every ``interval`` seconds and
writes what has accumulated in one ``os.write``, with the GIL released while the kernel takes it.

- Nothing is lost on the way out: `close` (the app's lifespan end, after uvicorn has let in-flight requests
  finish) drains the deque, and so does an ``atexit`` hook for a process that exits without a lifespan end.
  A request that crashes still gets its line: the middleware writes it in a ``finally``.
- Back-pressure: if stdout blocks (a stalled pipe reader), the writer thread waits in ``write`` and lines
  pile up to ``max_pending``; past that, a request's line is dropped and counted (``dropped``, exported as
  ``datasvc_access_log_dropped_total``) rather than ever stalling a request.

The fields are the ones the ``logging`` line had: ts, level, logger, msg, then the request's.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
from prometheus_client.core import CounterMetricFamily, Metric

LOGGER = "datasvc.access"
_PREFIX = {"level": "info", "logger": LOGGER, "msg": "request"}
_HEAD = orjson.dumps(_PREFIX)[1:-1] + b","  # "level":"info","logger":…,"msg":"request",


class _Clock:
    """The ISO 8601 time with milliseconds, formatted once per second and patched per millisecond."""

    __slots__ = ("_head", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._head = ""

    def now(self) -> str:
        t = time.time()
        second = int(t)
        if second != self._second:
            self._second = second
            self._head = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        return f"{self._head}.{int((t - second) * 1000):03d}+00:00"


class AccessLog:
    """Bounded, batched, thread-written JSON lines on one file descriptor (stdout by default)."""

    def __init__(self, fd: int = 1, *, interval: float = 0.05, max_pending: int = 20_000) -> None:
        self.fd = fd
        self.interval = interval
        self.max_pending = max_pending
        self._refused = 0  # counted by the request path only: the queue was full
        self._lost = 0  # counted by the writer only: stdout was closed
        self._pending: deque[bytes] = deque()
        self._clock = _Clock()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # one writer at a time: the thread, or `flush` from close/atexit
        self._thread: threading.Thread | None = None
        self._closed = False

    def write(self, fields: dict[str, Any]) -> None:
        """Queue one request's line; never blocks. The first call starts the writer thread."""
        if len(self._pending) >= self.max_pending:
            self._refused += 1
            return
        ts = self._clock.now()
        if fields:
            # The fixed head spliced in front of the request's own fields: the bytes one merged dict would
            # dump to, without building that dict (cheaper per line: this runs on every request).
            line = b'{"ts":"%s",%s%s\n' % (ts.encode(), _HEAD, orjson.dumps(fields, default=str)[1:])
        else:
            line = orjson.dumps({"ts": ts, **_PREFIX}) + b"\n"
        self._pending.append(line)  # deque.append is atomic: no lock on the request path
        if self._thread is None:
            self._start()

    @property
    def dropped(self) -> int:
        """Lines never written: refused while stdout was blocked, or lost because it was closed."""
        return self._refused + self._lost

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        """The `dropped` count as a Prometheus family (`datasvc.metrics.Metrics.register`)."""
        yield CounterMetricFamily(
            "datasvc_access_log_dropped",
            "Access-log lines dropped because stdout did not keep up (requests are never held for it).",
            value=self.dropped,
        )

    def _start(self) -> None:
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="datasvc-access-log", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _run(self) -> None:
        while not self._closed:
            self._wake.wait(self.interval)
            self.flush()

    def flush(self, timeout: float = -1) -> None:
        """Write every queued line now (from the writer thread, or at close, waiting at most ``timeout``)."""
        if not self._lock.acquire(timeout=timeout):
            return  # the writer is stuck in a blocked write: what is queued stays queued
        try:
            pending = self._pending
            batch = [pending.popleft() for _ in range(len(pending))]
            if not batch:
                return
            data = memoryview(b"".join(batch))
            while data:
                try:
                    written = os.write(self.fd, data)
                except InterruptedError:
                    continue
                except OSError:
                    # stdout is gone (closed pipe): nothing can be written any more; count, do not raise.
                    self._lost += len(batch)
                    return
                data = data[written:]
        finally:
            self._lock.release()

    def close(self) -> None:
        """Stop the writer thread and write what is left; safe to call twice."""
        thread, self._thread = self._thread, None
        self._closed = True
        self._wake.set()
        if thread is not None:
            thread.join(timeout=5.0)
            with contextlib.suppress(Exception):
                atexit.unregister(self.close)
        self._wake.clear()
        self.flush(timeout=5.0)
