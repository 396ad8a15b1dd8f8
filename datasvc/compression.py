"""gzip for large answers, when the caller accepts it: a 100-row page is ~29 kB of JSON and ~3 kB gzipped.

Ours rather than Starlette's `GZipMiddleware`, for three differences:

- an answer with an ``ETag`` is never compressed. The tag is strong and names one byte sequence
  (RFC 9110 8.8.3); a gzipped body under the same tag would break that, and a weakened tag would no longer
  match ``If-Match`` (strong comparison). Those answers are single users, at most ~1.6 kB anyway;
- ``Accept-Encoding`` is parsed: ``gzip;q=0`` refuses gzip, ``*`` accepts it;
- level 6 (zlib's default) rather than 9: for a 100-row page 9 costs ~5x the CPU for ~1% fewer bytes.

Only a body sent in one message is compressed (every answer of ours is); a streamed one passes as it is.
``Vary: Accept-Encoding`` goes on every answer that would be compressed for a caller accepting gzip, so a
shared cache keeps the two forms apart. Pure ASGI, like the rest of our middleware.
"""

from __future__ import annotations

import zlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Below this, gzip's header and a compressor's set-up buy little: a user (~300 B) stays as it is.
MINIMUM_SIZE = 1024
LEVEL = 6


def accepts_gzip(headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether ``Accept-Encoding`` accepts gzip with a non-zero quality (RFC 9110 12.5.3)."""
    for name, value in headers:
        if name != b"accept-encoding":
            continue
        for item in value.decode("latin-1").lower().split(","):
            coding, _, params = item.partition(";")
            if coding.strip() not in ("gzip", "x-gzip", "*"):
                continue
            quality = params.strip().removeprefix("q=") if params.strip().startswith("q=") else "1"
            try:
                return float(quality) > 0
            except ValueError:
                return False
    return False


class GZipMiddleware:
    """Compress one-message answers of ``minimum_size`` bytes or more that carry no ``ETag``."""

    def __init__(self, app: ASGIApp, *, minimum_size: int = MINIMUM_SIZE, level: int = LEVEL) -> None:
        self.app = app
        self.minimum_size = minimum_size
        self.level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None

        async def send_wrapper(message: Message) -> None:
            nonlocal start
            if start is None:
                if message["type"] != "http.response.start" or not self._eligible(message):
                    await send(message)  # a lookup (small, or with an ETag) passes here untouched
                    return
                start = message  # held until the body says whether to compress
                return
            head, start = start, None
            body: bytes = message.get("body", b"")
            if (
                message["type"] != "http.response.body"
                or message.get("more_body", False)  # streamed
                or len(body) < self.minimum_size
            ):
                await send(head)
                await send(message)
                return
            headers = [(k, v) for k, v in head.get("headers", ()) if k.lower() != b"content-length"]
            headers.append((b"vary", b"Accept-Encoding"))
            if accepts_gzip(scope["headers"]):
                compressor = zlib.compressobj(self.level, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
                body = compressor.compress(body) + compressor.flush()
                headers.append((b"content-encoding", b"gzip"))
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**head, "headers": headers})
            await send({**message, "body": body})

        await self.app(scope, receive, send_wrapper)

    def _eligible(self, start: Message) -> bool:
        """Whether the answer may be compressed, from its head: no ETag, no encoding, not known small."""
        for name, value in start.get("headers", ()):
            lower = name.lower()
            if lower in (b"etag", b"content-encoding"):
                return False
            if lower == b"content-length" and int(value) < self.minimum_size:
                return False
        return True
