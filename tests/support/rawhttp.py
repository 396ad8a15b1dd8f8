"""Raw HTTP/1.1 over a socket: for what an HTTP client library will not send (bad request lines,
heads past the bound, pipelining)."""

from __future__ import annotations

import re
import socket


def exchange(base_url: str, payload: bytes, *, chunk: int = 65536) -> bytes:
    """Send raw bytes (in chunks, stopping if the server hangs up) and read until the server closes."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        try:
            for start in range(0, len(payload), chunk):
                sock.sendall(payload[start : start + chunk])
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before it was all sent: what a bound is for
        received = b""
        try:
            while data := sock.recv(65536):
                received += data
        except ConnectionResetError:
            pass
        return received


def statuses(raw: bytes) -> list[int]:
    # Pipelined responses follow each other's bodies directly: no line break before a status line.
    return [int(m) for m in re.findall(rb"HTTP/1\.1 (\d{3}) ", raw)]
