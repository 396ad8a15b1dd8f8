"""RFC 7240 ``Prefer``: ``wait=N`` (the caller's deadline) and ``return=minimal`` (no body on writes).

Unknown preferences, and values that do not parse, are ignored (RFC 7240 section 2): a preference is a
hint, never a reason to refuse a request. What was honoured is named in ``Preference-Applied``.

``wait=N`` (seconds, decimals allowed) is counted from the request's arrival (the middleware's clock), so
it covers the wait for a pooled connection as well as the statement; it is capped by
``DATASVC_STATEMENT_TIMEOUT``, which bounds every statement anyway. Past it the handler's task is
cancelled: asyncpg then sends PostgreSQL a cancel request for the running statement (a second, short
connection, as ``pg_cancel_backend`` does) and the pooled connection, once the server has answered it,
serves the next request: nothing is terminated. The caller gets 504 ``deadline-exceeded``.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import TYPE_CHECKING

from datasvc.errors import DeadlineExceeded

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request
    from starlette.responses import Response

HEADER = "Prefer"
APPLIED = "Preference-Applied"
_KEY = b"prefer"
_SECONDS = re.compile(r"^[0-9]{1,9}(?:\.[0-9]{1,6})?$")


def _preferences(request: Request) -> dict[str, str]:
    """Every preference the request states, by lower-case name (the first wins, as RFC 7240 says)."""
    found: dict[str, str] = {}
    for key, raw in request.scope["headers"]:
        if key != _KEY:
            continue
        for item in raw.decode("latin-1").split(","):
            name, _, value = item.split(";", 1)[0].partition("=")
            found.setdefault(name.strip().lower(), value.strip().strip('"'))
    return found


def _has_prefer(request: Request) -> bool:
    return _first_prefer(request) is not None


def _first_prefer(request: Request) -> bytes | None:
    # A loop rather than ``any()`` over a generator, which costs a call per header: every request asks.
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    for key, value in headers:
        if key == _KEY:
            return value
    return None


def minimal(request: Request) -> bool:
    """Whether the caller asked for ``return=minimal``."""
    return _has_prefer(request) and _preferences(request).get("return", "").lower() == "minimal"


def applied(response: Response, preference: str) -> None:
    """Name ``preference`` in the response's ``Preference-Applied``, beside any already named."""
    current = response.headers.get(APPLIED)
    response.headers[APPLIED] = f"{current}, {preference}" if current else preference


def _wait(request: Request, cap: float) -> float | None:
    raw = _preferences(request).get("wait")
    if raw is None or not _SECONDS.match(raw):
        return None
    wait = float(raw)
    return min(wait, cap) if wait > 0 else None


def bounded(endpoint: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """``endpoint`` bounded by the caller's ``Prefer: wait``, for the app's wiring (`within_wait`)."""

    # Not a coroutine: it hands back the endpoint's own awaitable, so a request without ``Prefer`` (nearly
    # every one) runs no extra frame, at its call or at each of its awaits.
    def run(request: Request) -> Awaitable[Response]:
        if _first_prefer(request) is None:
            return endpoint(request)
        return within_wait(endpoint, request)

    return run


async def within_wait(endpoint: Callable[[Request], Awaitable[Response]], request: Request) -> Response:
    """Run ``endpoint``, bounded by the caller's ``Prefer: wait`` if it sent one (else as it is)."""
    if not _has_prefer(request):
        return await endpoint(request)
    state = request.scope["state"]
    wait = _wait(request, state["settings"].statement_timeout)
    if wait is None:
        return await endpoint(request)
    shown = f"{wait:g}"
    arrived: float = state.get("arrived", time.perf_counter())
    remaining = wait - (time.perf_counter() - arrived)
    if remaining <= 0:
        raise DeadlineExceeded(shown)
    deadline = asyncio.timeout(remaining)
    try:
        async with deadline:
            response = await endpoint(request)
    except TimeoutError:
        if deadline.expired():
            raise DeadlineExceeded(shown) from None
        raise  # a timeout of its own (the client-side command timeout): not the caller's deadline
    applied(response, f"wait={shown}")
    return response
