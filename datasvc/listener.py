"""The change feed's wake-up: one dedicated connection per process LISTENs, and wakes the long polls.

A long poll (``GET /api/v1/users/changes?wait=S``) reads, finds nothing, and waits here: for a
notification on ``datasvc_users_changes``, or its poll period, whichever comes first; then it reads again.
A wake-up is a hint, never the data: every read goes through the trail's own rule (sql/users/changes.sql),
so a lost or extra wake-up costs latency, never a change.

Who notifies: the process that wrote a user, after its write committed (`Listener.nudge`, called for every
successful write operation), on this same connection; writes while one is in flight (or within
`NOTIFY_GAP` after it) fold into one more.
Not the trigger: a transaction that notifies holds a cluster-wide lock from before its commit record
until it is flushed, so concurrent writers would commit one fsync at a time (migration 0015). A write made
with psql wakes nobody: the waiters' poll period (`DIRECT_POLL`) picks it up.

The connection is not a pooled one: a LISTEN belongs to a session, and a pooled connection serves
whoever comes next. After it drops (server restart, ``pg_terminate_backend``, a network that went
silent, found by a ping every `PING_EVERY` seconds) every waiter is woken to read once, and again once
it is back, so a commit in the gap waits at most one read; meanwhile the waiters poll. Behind a transaction
pooler (``DATASVC_POOL_MODE=transaction``) a session's LISTEN would be lost with its server connection
(PgBouncer does not carry it), so there is no listening connection: waiters poll every `POOLER_POLL`
seconds, and this process's own writes wake its waiters at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import asyncpg

from datasvc.connections import server_settings
from datasvc.statements import execute

if TYPE_CHECKING:
    from datasvc.registry import Registry
    from datasvc.settings import Settings

log = logging.getLogger("datasvc.listener")

CHANNEL = "datasvc_users_changes"
DIRECT_POLL = 0.5  # a waiter reads again after this long without a notification (writes made with psql)
POOLER_POLL = 0.25  # behind a transaction pooler, where nothing notifies across processes
PENDING_POLL = 0.1  # changes wait behind a transaction still running: read again this soon
NOTIFY_GAP = 0.01  # at most one NOTIFY per this long per process, however many writes commit meanwhile
CLOSE_WAIT = 1.0  # the longest a notification in flight may delay shutdown
# What a statement on the listening connection may raise when the connection is going.
FAILURES = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError)
PING_EVERY = 10.0  # a silent network never closes the socket: ask the server this often
RECONNECT_PAUSE = 1.0


class Listener:
    """Wakes the change feed's waiters of this process; owns the one listening connection, if any."""

    def __init__(self, settings: Settings, registry: Registry) -> None:
        self._settings = settings
        self._registry = registry
        self._woken = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._busy = asyncio.Lock()  # one statement at a time on the connection: a ping or a notify
        self._notifying = False
        self._again = False
        self._task: asyncio.Task[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self.listens = settings.pool_mode != "transaction" and settings.database_url is not None
        self.connected = asyncio.Event()  # set while the LISTEN is in place (tests wait on it)
        self.drops = 0  # connections lost since start
        self.notifications = 0  # received since start
        # How the connection shows in pg_stat_activity: a DBA can tell it from the pool's.
        self.name = f"{settings.application_name}/listener"[:63]

    @property
    def poll(self) -> float:
        """How long a waiter waits for a wake-up before it reads again anyway."""
        return DIRECT_POLL if self.listens else POOLER_POLL

    def start(self) -> None:
        """Start listening (in the running loop: an app may be started again by a test in a new one)."""
        self._woken = asyncio.Event()
        self._busy = asyncio.Lock()
        self.connected = asyncio.Event()
        if self.listens:
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self._sender is not None:
            # A notification in flight finishes first: a statement cancelled mid-protocol leaves the
            # connection in a state asyncpg reports as InternalClientError when it is closed.
            with contextlib.suppress(TimeoutError, *FAILURES):
                await asyncio.wait_for(asyncio.shield(self._sender), CLOSE_WAIT)
        for task in (self._task, self._sender):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, *FAILURES):
                    await task
        await self._drop()

    def token(self) -> asyncio.Event:
        """Take before reading; `wait` on it after a read found nothing: a wake-up between is not lost."""
        return self._woken

    async def wait(self, token: asyncio.Event, seconds: float) -> None:
        """Until a wake-up after ``token`` was taken, or ``seconds`` have passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(token.wait(), seconds)

    def wake(self) -> None:
        """Every waiter reads again."""
        woken, self._woken = self._woken, asyncio.Event()
        woken.set()

    def nudge(self) -> None:
        """A write of this process committed: notify every process (this one too, by the echo)."""
        if self._conn is None:
            self.wake()  # no listening connection: at least this process's waiters
            return
        if self._notifying:
            self._again = True  # the notification in flight may have been sent before this commit
            return
        self._notifying = True
        # A context of its own: the nudge comes from inside a request, whose access-log timing and
        # trace the notification is not part of.
        self._sender = asyncio.create_task(self._notify(), context=contextvars.Context())

    async def _notify(self) -> None:
        try:
            while True:
                self._again = False
                conn = self._conn
                if conn is None:
                    self.wake()
                    return
                async with self._busy:
                    await execute(conn, self._registry["changes.notify"], ())
                # Each NOTIFY is a transaction of its own with a commit to flush: under a write load, one
                # per gap wakes the waiters as well as one per write would.
                await asyncio.sleep(NOTIFY_GAP)
                if not self._again:
                    return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The connection is going; `_run` notices and wakes everyone when it does.
            log.info("notify failed", extra={"error": type(exc).__name__})
            self.wake()
        finally:
            self._notifying = False

    def _on_notification(self, *_: Any) -> None:
        self.notifications += 1
        self.wake()

    async def _run(self) -> None:
        assert self._settings.database_url is not None
        while True:
            lost = asyncio.Event()
            try:
                conn = await asyncpg.connect(
                    self._settings.database_url,
                    timeout=self._settings.connect_timeout,
                    command_timeout=self._settings.statement_timeout + 1.0,
                    server_settings={**server_settings(self._settings), "application_name": self.name},
                    statement_cache_size=self._settings.statement_cache_size,
                )
                self._conn = conn
                conn.add_termination_listener(_setter(lost))
                await conn.add_listener(CHANNEL, self._on_notification)
                self.connected.set()
                self.wake()  # what committed while no one listened: read it once
                while not conn.is_closed():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(lost.wait(), PING_EVERY)
                    if lost.is_set():
                        break
                    async with self._busy:
                        await execute(conn, self._registry["changes.ping"], ())
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.info("listening connection failed; reconnecting", extra={"error": type(exc).__name__})
            finally:
                was_connected = self.connected.is_set()
                self.connected.clear()
                await self._drop()
            if was_connected:
                self.drops += 1
                log.info("listening connection lost; waiters read once", extra={"drops": self.drops})
            self.wake()
            await asyncio.sleep(RECONNECT_PAUSE)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), timeout=1.0)
            except (TimeoutError, *FAILURES):
                conn.terminate()


def _setter(event: asyncio.Event) -> Callable[[Any], None]:
    """A termination callback that sets ``event``."""

    def on_terminated(_: Any) -> None:
        event.set()

    return on_terminated
