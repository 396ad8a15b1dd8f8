"""The tokens file, watched: a token removed from ``DATASVC_AUTH_TOKENS_FILE`` is refused without a restart.

Each worker runs one `TokensFileWatcher` in its lifespan. Every ``DATASVC_AUTH_RELOAD_SECONDS`` it
``stat``s the file (microseconds, on the event loop); only when the file changed is it read, in a thread,
parsed and swapped into the `Authenticator` whole. A file that no longer parses, holds a token twice,
cannot be read or is gone keeps the last good set and logs an error: the watcher never falls open, and
an empty file refuses every caller. ``/metrics`` reports the reloads and the last error.

A change is seen by its size, inode and change/modification times. A write within the filesystem's
timestamp granularity of the last read would leave all of them equal, so a file modified less than
`SETTLE_NS` before it was read is read again on the next check (as git treats "racily clean" files).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from datasvc.auth import AuthConfigError, Authenticator, Caller, parse_entries, read_tokens_file

log = logging.getLogger("datasvc.auth")

SETTLE_NS = 2_000_000_000

Signature = tuple[int, int, int, int, int]


@dataclass(eq=False)  # registered as a collector: compared and hashed by identity
class ReloadState:
    """What ``/metrics`` shows: how many reloads were applied or refused, and the last refusal."""

    applied: int = 0
    failed: int = 0
    failing: bool = False  # the file as it is now is not what is served
    last_error: str | None = None
    last_error_at: float | None = None  # unix time
    tokens: int = 0

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        """The reloads as Prometheus families (this worker's own: `datasvc.metrics.Metrics.register`)."""
        reloads = CounterMetricFamily(
            "datasvc_auth_tokens_reloads",
            "Changes of DATASVC_AUTH_TOKENS_FILE seen: applied, or refused (the last good set kept).",
            labels=["result"],
        )
        reloads.add_metric(["applied"], self.applied)
        reloads.add_metric(["refused"], self.failed)
        yield reloads
        yield GaugeMetricFamily(
            "datasvc_auth_tokens_reload_failing",
            "1 while the tokens file as it is now cannot be applied (alert on this).",
            value=int(self.failing),
        )
        yield GaugeMetricFamily("datasvc_auth_tokens", "Tokens accepted now.", value=self.tokens)
        if self.last_error is not None:
            last = GaugeMetricFamily(
                "datasvc_auth_tokens_last_error_timestamp_seconds",
                "When the tokens file was last refused, labelled with why.",
                labels=["error"],
            )
            last.add_metric([self.last_error], self.last_error_at or 0.0)
            yield last


class TokensFileWatcher:
    """Re-reads ``path`` when it changes and gives `authenticator` the file's tokens plus ``fixed``."""

    def __init__(
        self,
        authenticator: Authenticator,
        path: Path,
        *,
        fixed: list[tuple[str, Caller]],
        interval: float,
    ) -> None:
        self.authenticator = authenticator
        self.path = path
        self.fixed = fixed
        self.interval = interval
        # Read here, stat first, so what is served and what later checks compare against are one version
        # of the file. A bad file raises AuthConfigError: start-up refuses, as with a bad variable.
        signature = _stat(path)
        self._text = read_tokens_file(path)
        entries = fixed + parse_entries(self._text, str(path))
        authenticator.replace(entries)
        self._signature = self._settled(signature)
        self.state = ReloadState(tokens=len(entries))

    async def run(self) -> None:
        """Check every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:  # a bug here must not stop revocation for the life of the process
                log.exception("tokens file check failed", extra={"file": str(self.path)})

    async def check(self) -> bool:
        """Reload if the file changed; whether a new set of tokens is now served."""
        signature = _stat(self.path)
        if signature is not None and signature == self._signature:
            return False
        if signature is None:
            self._signature = None
            self._fail(f"DATASVC_AUTH_TOKENS_FILE={self.path}: cannot stat it (missing?)")
            return False
        try:
            # Off the event loop: a file on a slow or network filesystem must not stall requests.
            text = await asyncio.to_thread(read_tokens_file, self.path)
        except AuthConfigError as exc:
            self._fail(str(exc))
            return False
        self._signature = self._settled(signature)
        if text == self._text:  # what is served already (touched, or back from a bad edit)
            self.state.failing = False
            return False
        try:
            entries = self.fixed + parse_entries(text, str(self.path))
            self.authenticator.replace(entries)
        except AuthConfigError as exc:
            self._fail(str(exc))
            return False
        self._text = text
        self.state.applied += 1
        self.state.failing = False
        self.state.tokens = len(entries)
        log.info(
            "tokens file reloaded",
            extra={"file": str(self.path), "tokens": len(entries), "callers": self.authenticator.callers()},
        )
        if not entries:
            log.warning("no token is configured any more: every caller is refused until one is added")
        return True

    def _fail(self, message: str) -> None:
        if self.state.failing and message == self.state.last_error:
            return  # the same failure seen again at the next check: counted and logged once
        self.state.failed += 1
        self.state.failing = True
        self.state.last_error = message
        self.state.last_error_at = time.time()
        log.error(
            "tokens file not reloaded; still serving the last good set",
            extra={"file": str(self.path), "error": message},
        )

    @staticmethod
    def _settled(signature: Signature | None) -> Signature | None:
        """``signature``, or None (read again next time) if the file was modified too recently."""
        if signature is None or time.time_ns() - signature[3] < SETTLE_NS:
            return None
        return signature


def _stat(path: Path) -> Signature | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
