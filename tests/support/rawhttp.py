"""Raw HTTP/1.1 over a socket: for what an HTTP client library will not send (bad request lines,
heads past the bound, pipelining)."""

from __future__ import annotations

import re
import socket


def connect(base_url: str, *, timeout: float = 10) -> socket.socket:
    """A plain TCP connection to the server at ``base_url`` (``http://host:port``)."""
    host, port = base_url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closing)."""
    received = b""
    try:
        while data := sock.recv(65536):
            received += data
    except ConnectionResetError:
        pass
    return received


def exchange(base_url: str, payload: bytes, *, chunk: int = 65536) -> bytes:
    """Send raw bytes (in chunks, stopping if the server hangs up) and read until the server closes."""
    with connect(base_url) as sock:
        try:
            for start in range(0, len(payload), chunk):
                sock.sendall(payload[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it was all sent: what a bound is for
        return read_until_closed(sock)


def statuses(raw: bytes) -> list[int]:
    # Pipelined responses follow each other's bodies directly: no line break before a status line.
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
