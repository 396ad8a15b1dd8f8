"""The tokens file, watched: a token removed from ``DATASVC_AUTH_TOKENS_FILE`` is refused without a restart.

Each worker runs one `TokensFileWatcher` in its lifespan. Every ``DATASVC_AUTH_RELOAD_SECONDS`` it
``stat``s the file (microseconds, on the event loop); only when the file changed is it read, in a thread,
parsed and swapped into the `Authenticator` whole.

It fails closed: a token the file as it is now does not list is never accepted after the next check,
whatever else is wrong with the file. A file that no longer parses (a typo, a token twice) keeps only
those tokens of the last good set whose hash it still lists, each with no more scopes than both versions
give it: an edit that removes a token and breaks a line revokes the token all the same. A file that
cannot be read (gone, not UTF-8, no permission) and an empty one list no token: every caller of the file
is refused (``DATASVC_AUTH_TOKENS`` still holds) and an error says so at every change, with the
``datasvc_auth_tokens_reload_failing`` gauge at 1 until the file is back. Never open.
``/metrics`` reports the reloads and the last error.

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

from datasvc.auth import SHA256_HEX, AuthConfigError, Authenticator, Caller, parse_entries, read_tokens_file

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
        self._file_entries = parse_entries(self._text, str(path))  # the last good set's, from the file
        authenticator.replace(fixed + self._file_entries)
        self._signature = self._settled(signature)
        self._reduced = False  # serving fewer than the last good set: the file is bad
        self._kept: list[tuple[str, Caller]] = []
        self.state = ReloadState(tokens=len(fixed) + len(self._file_entries))

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
            return self._fail(f"DATASVC_AUTH_TOKENS_FILE={self.path}: cannot stat it (missing?)", "")
        try:
            # Off the event loop: a file on a slow or network filesystem must not stall requests.
            text = await asyncio.to_thread(read_tokens_file, self.path)
        except AuthConfigError as exc:
            return self._fail(str(exc), "")
        self._signature = self._settled(signature)
        if text == self._text and not self._reduced:  # what is served already (touched)
            self.state.failing = False
            return False
        try:
            file_entries = parse_entries(text, str(self.path))
            self.authenticator.replace(self.fixed + file_entries)
        except AuthConfigError as exc:
            return self._fail(str(exc), text)
        self._text = text
        self._file_entries = file_entries
        self._reduced = False
        self.state.applied += 1
        self.state.failing = False
        self.state.tokens = len(self.fixed) + len(file_entries)
        log.info(
            "tokens file reloaded",
            extra={
                "file": str(self.path),
                "tokens": self.state.tokens,
                "callers": self.authenticator.callers(),
            },
        )
        if not file_entries:
            log.error(
                "the tokens file lists no token: every caller of it is refused until one is added",
                extra={"file": str(self.path)},
            )
        return True

    def _fail(self, message: str, text: str) -> bool:
        """Serve only the last good tokens ``text`` still lists; whether that changed what is served."""
        kept = still_listed(self._file_entries, text)
        changed = not self._reduced or kept != self._kept
        if changed:
            self.authenticator.replace(self.fixed + kept)
            self._kept = kept
            self._reduced = True
            self.state.tokens = len(self.fixed) + len(kept)
        if self.state.failing and message == self.state.last_error and not changed:
            return False  # the same failure seen again at the next check: counted and logged once
        self.state.failed += 1
        self.state.failing = True
        self.state.last_error = message
        self.state.last_error_at = time.time()
        dropped = sorted({c.name for _, c in self._file_entries} - {c.name for _, c in kept})
        log.error(
            "tokens file not applied; only the tokens it still lists are accepted",
            extra={"file": str(self.path), "error": message, "tokens": self.state.tokens, "refused": dropped},
        )
        return changed

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


def still_listed(entries: list[tuple[str, Caller]], text: str) -> list[tuple[str, Caller]]:
    """The ``entries`` whose hash ``text`` (a file that may not parse) still lists on a line of its own.

    Each keeps its caller's name and only the scopes both versions give it (a line listing a hash twice
    gives the scopes common to both); a line whose scopes cannot be read gives none, which refuses it.
    """
    listed: dict[str, frozenset[str]] = {}
    for line in text.splitlines():
        for chunk in line.split("#", 1)[0].split(";"):
            fields = chunk.split()
            hashes = [f for f in fields if SHA256_HEX.match(f)]
            if len(hashes) != 1:
                continue
            scopes = (
                frozenset(s for f in fields[1:2] for s in f.split(",")) if len(fields) == 3 else frozenset()
            )
            digest = hashes[0]
            listed[digest] = listed[digest] & scopes if digest in listed else scopes
    kept = []
    for digest, caller in entries:
        scopes = caller.scopes & listed.get(digest, frozenset())
        if scopes:
            kept.append((digest, Caller(caller.name, scopes)))
    return kept
