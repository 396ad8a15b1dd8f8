"""The drain window: what `datasvc serve` does between SIGTERM and stopping (``DATASVC_DRAIN_SECONDS``).

uvicorn, on SIGTERM, stops listening and closes every idle keep-alive connection at once. A request a
caller has just written on such a connection is then lost ("connection reset by peer"), and a load
balancer that has not yet noticed the instance going away keeps sending it new connections that are
refused. During the drain window instead:

- ``/health/ready`` answers 503 ``shutting-down``, so a balancer checking it takes the instance out of
  rotation (it needs its check interval times its fall count: the window must be longer);
- the listening socket stays open and every request is served as usual, but answered with
  ``Connection: close`` (the protocol in `datasvc.protocol` reads `Drain.draining` per request), so each
  keep-alive connection ends right after an answer, from the server's side, with nothing in flight;
- a connection that stays idle is left open until the window ends.

At the end of the window new connections stop (their SYNs dropped, so they are refused later, before
anything is written) and the connections the kernel already accepted are accepted and served
(`datasvc.listeners`). Then uvicorn's own shutdown runs: the listener closes, idle connections close
(one that was just accepted first gets its request answered, `datasvc.protocol`), in-flight requests get
``DATASVC_SHUTDOWN_TIMEOUT`` to finish, the pool closes. A second SIGTERM ends the window at once;
SIGINT (Ctrl+C) never waits for it.

The drain takes SIGTERM over from uvicorn's handler in the lifespan start-up (uvicorn installs its handler
before that, in every worker process) and hands the signal on to it when the window ends, so uvicorn
keeps its whole shutdown sequence, with one worker or with ``--workers N``.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
import time
from collections.abc import Callable, Collection
from types import FrameType
from typing import Any

from datasvc import listeners

log = logging.getLogger("datasvc.drain")

_SignalHandler = Callable[[int, FrameType | None], Any]
# At the end of the window, how long the accept queue may take to empty before the listener closes.
QUEUE_WAIT = 1.0


class Drain:
    """One process's drain state: whether it began, and the open connections to tell."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.draining = False
        self.began: float | None = None  # time.monotonic() of the SIGTERM
        # uvicorn's set of open connections (protocol objects) and the port they came in on, learnt from
        # the first connection made.
        self.connections: Collection[Any] = ()
        self.port: int | None = None

    def begin(self, signal_name: str = "SIGTERM") -> None:
        """Answer readiness 503 and every request from now on with ``Connection: close``."""
        if self.draining:
            return
        self.draining = True
        self.began = time.monotonic()
        # A request already being served gets `Connection: close` too, unless its answer has started.
        for connection in list(self.connections):
            cycle = getattr(connection, "cycle", None)
            if cycle is not None and not cycle.response_started:
                cycle.keep_alive = False
        log.info(
            f"{signal_name}: draining; readiness answers 503 and connections close after their answer",
            extra={"drain_seconds": self.seconds, "open_connections": len(self.connections)},
        )

    def take_sigterm(self) -> None:
        """From now on SIGTERM begins the drain; the server's own handler gets it when the window ends.

        Call it in the running event loop of the serving process, after the server installed its handler.
        Does nothing off the main thread (in-process test servers) or with a window of 0.
        """
        if self.seconds <= 0 or threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous):  # no server handler to hand the signal on to
            return
        hand_on: _SignalHandler = previous
        loop = asyncio.get_running_loop()

        def on_sigterm(signum: int, frame: FrameType | None) -> None:
            if self.draining:  # a second SIGTERM: stop without waiting for the window
                hand_on(signum, frame)
                return
            # A signal handler may run between any two bytecodes of the loop: touch the loop only
            # through call_soon_threadsafe, and log from the callback (logging takes locks).
            loop.call_soon_threadsafe(self._start_window, loop, hand_on, signum)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _start_window(self, loop: asyncio.AbstractEventLoop, hand_on: _SignalHandler, signum: int) -> None:
        if self.draining:
            return
        self.begin(signal.Signals(signum).name)  # SIGHUP is handed to this handler too: name it
        loop.call_later(self.seconds, self._end_window, hand_on, signum)

    def _end_window(self, hand_on: _SignalHandler, signum: int) -> None:
        log.info("drain window over: stopping", extra={"open_connections": len(self.connections)})
        loop = asyncio.get_running_loop()
        # No reset for a connection the kernel accepted: no new handshake, the queue emptied, then the
        # listener closes (datasvc.listeners).
        sockets = listeners.listening(self.port) if self.port else []
        for sock in sockets:
            listeners.refuse_new(sock)
        deadline = time.monotonic() + QUEUE_WAIT

        def when_accepted() -> None:
            if any(listeners.queued(s) for s in sockets) and time.monotonic() < deadline:
                loop.call_later(0.01, when_accepted)
                return
            for sock in sockets:
                sock.close()  # our duplicates: uvicorn closes the listener itself
            hand_on(signum, None)

        # A handshake under way when the filter went on completes within a round trip: wait one first.
        loop.call_later(0.02, when_accepted)
