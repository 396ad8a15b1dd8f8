"""Conditional requests (RFC 9110 section 13): a user's ``ETag`` is its row ``version``.

Every write of a row bumps ``users.version`` by one (trigger ``users_touch_updated_at``, migration 0005)
while holding the row lock, so versions of one row never repeat and never go backwards, whatever the
clocks or the order in which queued writers started. The tag is the version in decimal, quoted: opaque
to callers, and parsed back here so the ``If-Match`` check runs inside the ``UPDATE``/``DELETE`` itself
(``version = any($n)``) — atomic, no read-then-write window.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from datasvc import inputs

if TYPE_CHECKING:
    from starlette.requests import Request

# One entity-tag of a list: optional weakness prefix, then a quoted opaque value (RFC 9110 8.8.3).
_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')
# A bigint in plain decimal; anything else (an older timestamp-based tag included) matches no version.
_VERSION = re.compile(r"^[1-9][0-9]{0,17}$")


def etag(version: int) -> str:
    """The strong entity-tag of a row version."""
    return f'"{version}"'


def _tags(header: str) -> list[tuple[bool, str]]:
    """(weak, opaque) pairs of a tag list; whatever does not parse is dropped: it can match nothing."""
    out: list[tuple[bool, str]] = []
    pos = 0
    while pos < len(header):
        match = _TAG.match(header, pos)
        if match is None:
            break
        out.append((match.group(1) is not None, match.group(2)))
        pos = match.end()
    return out


def if_match(request: Request) -> list[int] | None:
    """The row versions ``If-Match`` accepts; `None` when there is no condition (absent, or ``*``).

    Strong comparison: a weak tag never matches. An empty list (nothing parsed) matches nothing.
    """
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        # "*" holds whenever the row exists, and a missing row is 404 whatever the preconditions say.
        return None
    return [int(opaque) for weak, opaque in _tags(header) if not weak and _VERSION.match(opaque)]


def not_modified(request: Request, current: str) -> bool:
    """``If-None-Match`` names the current tag (weak comparison), or is ``*``: answer 304."""
    header = inputs.header(request, b"if-none-match")
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(f'"{opaque}"' == current for _weak, opaque in _tags(header))
