"""A TCP proxy between the service and PostgreSQL that can break the network on demand.

Usage::

    with FaultProxy() as proxy:                      # 127.0.0.1:<free port> -> the test server
        url = proxy.url_for(database_url)            # same database, through the proxy
        proxy.set_mode("close")                      # refuse new connections, drop open ones
        proxy.set_mode("pass")                       # listen again on the same port

Modes:

- ``pass``  forward both ways;
- ``close`` stop listening (connection refused) and close every open connection (FIN);
- ``reset`` reset every open connection (RST) and reset new ones as soon as they arrive;
- ``stall`` stop forwarding without closing anything: bytes are held, new connections are accepted and
  held. Back to ``pass``, everything flows again, as after a healed partition. ``held`` counts the bytes
  clients sent that a stall holds, so a test can wait until a request is stuck rather than sleep.

The proxy runs its own event loop in a daemon thread, so sync and async tests drive it alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from tests.support.pgserver import address

Mode = Literal["pass", "close", "reset", "stall"]


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN: SO_LINGER on with a zero timeout."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class FaultProxy:
    """127.0.0.1:<port> -> upstream, with `set_mode` to inject faults; use as a context manager."""

    def __init__(self, upstream: tuple[str, int] | None = None) -> None:
        # The test server (DATASVC_TEST_DATABASE_URL) unless told otherwise: `url_for` keeps only the
        # database name and credentials of the URL it rewrites, so the proxy must lead where it pointed.
        self.upstream = upstream or address()
        self.mode: Mode = "pass"
        self.port = 0
        self.accepted = 0
        self.held = 0  # bytes from clients (the service) held by a stall, not yet forwarded
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="faultproxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter | None]] = set()
        self._flowing: asyncio.Event | None = None

    # --- control, from any thread -------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def set_mode(self, mode: Mode) -> None:
        """Switch mode; returns once open connections have been dealt with."""
        self._call(self._set_mode(mode))

    def reset_now(self) -> None:
        """Reset every open connection (RST), then ``pass``: a one-off blip, e.g. a NAT or firewall reset."""
        self._call(self._reset_links())

    def url_for(self, database_url: str) -> str:
        """``database_url`` with host and port replaced by the proxy's."""
        parts = urlsplit(database_url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    @property
    def open_links(self) -> int:
        return len(self._links)

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    # --- the proxy, on its own loop ----------------------------------------------------------

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        await self._listen()

    async def _listen(self) -> None:
        # The same port every time: the service's DATABASE_URL must stay valid across close/pass.
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True, backlog=128
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        await self._close_listener()
        self._drop_links(reset=False)

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _drop_links(self, *, reset: bool) -> None:
        for client, upstream in list(self._links):
            for writer in (client, upstream):
                if writer is None:
                    continue
                if reset:
                    _rst(writer)
                else:
                    writer.close()
        self._links.clear()

    async def _reset_links(self) -> None:
        self._drop_links(reset=True)
        await self._set_mode("pass")

    async def _set_mode(self, mode: Mode) -> None:
        assert self._flowing is not None
        self.mode = mode
        if mode == "stall":
            self._flowing.clear()
            return
        if mode == "close":
            await self._close_listener()
            self._drop_links(reset=False)
        elif mode == "reset":
            self._drop_links(reset=True)
        elif self._server is None:
            await self._listen()
        self._flowing.set()
        await asyncio.sleep(0)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        self.accepted += 1
        if self.mode == "reset":
            _rst(writer)
            return
        link: tuple[asyncio.StreamWriter, asyncio.StreamWriter | None] = (writer, None)
        self._links.add(link)
        await self._flowing.wait()
        if link not in self._links:  # dropped while stalled
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            self._links.discard(link)
            writer.close()
            return
        self._links.discard(link)
        if self.mode in ("close", "reset"):
            up_writer.close()
            writer.close()
            return
        link = (writer, up_writer)
        self._links.add(link)
        try:
            await asyncio.gather(
                self._pipe(reader, up_writer, from_client=True), self._pipe(up_reader, writer)
            )
        finally:
            self._links.discard(link)

    async def _pipe(
        self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, *, from_client: bool = False
    ) -> None:
        assert self._flowing is not None
        held = 0
        try:
            while True:
                # Bytes that arrive during a stall are read and held (asyncio's transport reads them off
                # the socket anyway), then forwarded when it ends: a network that stopped delivering.
                data = await src.read(65536)
                if not data:
                    break
                if not self._flowing.is_set():
                    if from_client:
                        held = len(data)
                        self.held += held
                    await self._flowing.wait()
                    self.held -= held
                    held = 0
                dst.write(data)
                await dst.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            self.held -= held  # dropped while held (reset_now, close)
            if not dst.is_closing():
                dst.close()
