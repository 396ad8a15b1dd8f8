"""``python -m bench.gzip_cost``: what `GZipMiddleware` adds to a lookup-sized answer, in process.

A lookup (~300 bytes, with an ETag) is never compressed; this measures the pass-through alone, without
the network or the database, so it is steady on a loaded machine where a wrk run is not. The bare app
and the wrapped one alternate ten times; the minimum of each is compared.
"""

from __future__ import annotations

import asyncio
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from datasvc.compression import GZipMiddleware

BODY = orjson.dumps(
    {
        "id": 1,
        "email": "alice.smith.1@example.org",
        "username": "alice_smith_1",
        "full_name": "Alice Smith",
        "bio": "Hi, I am Alice. I like databases. I like databases.",
        "status": "active",
        "is_verified": True,
        "is_admin": False,
        "created_at": "2024-01-01T00:00:00+00:00",
        "updated_at": "2024-01-01T00:00:00+00:00",
    }
)
SCOPE: Scope = {
    "type": "http",
    "headers": [(b"host", b"x"), (b"accept-encoding", b"gzip, deflate"), (b"user-agent", b"wrk")],
}
ROUNDS, CALLS = 10, 20_000


def lookup(etag: bool) -> ASGIApp:
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]
    if etag:
        headers.append((b"etag", b'"1"'))

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": BODY})

    return app


async def _sink(message: Message) -> None:
    return None


async def _receive() -> Message:
    return {"type": "http.request"}


async def _microseconds(app: ASGIApp) -> float:
    started = time.perf_counter()
    for _ in range(CALLS):
        await app(SCOPE, _receive, _sink)
    return (time.perf_counter() - started) / CALLS * 1e6


async def main() -> None:
    for etag in (False, True):
        bare_app = lookup(etag)
        wrapped = GZipMiddleware(bare_app)
        bare, mw = [], []
        for _ in range(ROUNDS):
            bare.append(await _microseconds(bare_app))
            mw.append(await _microseconds(wrapped))
        print(
            f"{'with' if etag else 'without'} an ETag: bare {min(bare):.2f} us, with the middleware "
            f"{min(mw):.2f} us, added {min(mw) - min(bare):.2f} us per request (min of {ROUNDS}x{CALLS})"
        )


if __name__ == "__main__":
    asyncio.run(main())
