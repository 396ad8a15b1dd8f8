"""This process's listening sockets, stopped without resetting a connection the kernel already accepted.

Closing a listening socket resets every connection still in its accept queue: the kernel completed their
handshake, so their clients may have written a request already, and they get a reset instead of an
answer ("written, then reset": ambiguous for the caller). So the drain window (`datasvc.drain`) ends in
three steps before uvicorn closes the listener:

1. a socket filter on the listener drops new SYNs: a client connecting from now on gets no handshake,
   retries its SYN (after a second) and is refused once the listener is gone: refused before it could
   write anything, which is safe to retry; a handshake already under way completes;
2. the event loop accepts what the queue holds, until the kernel reports it empty (``TCP_INFO``'s
   ``tcpi_unacked`` is a listener's queue length), with a bound;
3. the listener closes; the connections accepted in step 2 are served (their first request is awaited
   and answered with ``Connection: close``, `datasvc.protocol`).

Linux only (``SO_ATTACH_FILTER``, ``TCP_INFO``); elsewhere nothing is filtered and the queue not read.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import struct
import sys

_SO_ATTACH_FILTER = 26  # asm-generic/socket.h
# Classic BPF over the TCP header: load the flags byte, keep SYN and ACK, drop a pure SYN, pass the rest.
_DROP_SYN = (
    (0x30, 0, 0, 13),  # ldb [13]
    (0x54, 0, 0, 0x12),  # and #SYN|ACK
    (0x15, 0, 1, 0x02),  # jeq #SYN, drop, pass
    (0x06, 0, 0, 0),  # ret #0: drop
    (0x06, 0, 0, 0xFFFFFFFF),  # ret #-1: pass whole
)


def listening(port: int) -> list[socket.socket]:
    """Duplicates of this process's sockets listening on TCP ``port`` (close them when done)."""
    found: list[socket.socket] = []
    if not sys.platform.startswith("linux"):
        return found
    seen: set[str] = set()
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            if not target.startswith("socket:") or target in seen:
                continue
            seen.add(target)
            dup = socket.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            listens = dup.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
            ours = dup.type == socket.SOCK_STREAM and dup.getsockname()[1] == port
        except (OSError, IndexError, TypeError):
            listens, ours = 0, False
        if listens and ours:
            found.append(dup)
        else:
            dup.close()
    return found


def refuse_new(sock: socket.socket) -> bool:
    """Drop every new SYN on the listener ``sock``; whether the filter is in place."""
    program = b"".join(struct.pack("HBBI", *insn) for insn in _DROP_SYN)
    buffer = ctypes.create_string_buffer(program)
    fprog = struct.pack("HL", len(_DROP_SYN), ctypes.addressof(buffer))  # struct sock_fprog
    try:
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, fprog)
    except OSError:
        return False
    return True


def queued(sock: socket.socket) -> int:
    """Connections in the listener's accept queue, handshake done, not accepted yet (0 if unknown)."""
    with contextlib.suppress(OSError):
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
        return int(struct.unpack_from("I", info, 24)[0])  # tcpi_unacked: a listener's queue length
    return 0
