"""Conditional requests (RFC 9110 section 13): a user's ``ETag`` is its ``updated_at``, to the microsecond.

Every write to a row bumps ``updated_at`` (trigger ``users_touch_updated_at``), and two writes of one row
are two transactions, the second started after the first committed, so each version of a row has its own
``updated_at`` as long as the database clock does not step backwards. The tag is that instant as
microseconds since the epoch, in hex: opaque to callers, and turned back into a timestamp here so the
``If-Match`` check runs inside the ``UPDATE``/``DELETE`` itself (``updated_at = ANY($n)``) — atomic, no
read-then-write window.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.requests import Request

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
# One entity-tag of a list: optional weakness prefix, then a quoted opaque value (RFC 9110 8.8.3).
_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')
_VERSION = re.compile(r"^[0-9a-f]{1,15}$")


def etag(updated_at: datetime) -> str:
    """The strong entity-tag of a row version."""
    return f'"{(updated_at - _EPOCH) // _MICRO:x}"'


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


def _version(opaque: str) -> datetime | None:
    if not _VERSION.match(opaque):
        return None
    try:
        return _EPOCH + int(opaque, 16) * _MICRO
    except OverflowError:
        return None


def if_match(request: Request) -> list[datetime] | None:
    """The row versions ``If-Match`` accepts; `None` when there is no condition (absent, or ``*``).

    Strong comparison: a weak tag never matches. An empty list (nothing parsed) matches nothing.
    """
    header = request.headers.get("if-match")
    if header is None or header.strip() == "*":
        # "*" holds whenever the row exists, and a missing row is 404 whatever the preconditions say.
        return None
    versions = [_version(opaque) for weak, opaque in _tags(header) if not weak]
    return [v for v in versions if v is not None]


def not_modified(request: Request, current: str) -> bool:
    """``If-None-Match`` names the current tag (weak comparison), or is ``*``: answer 304."""
    header = request.headers.get("if-none-match")
    if header is None:
        return False
    if header.strip() == "*":
        return True
    return any(f'"{opaque}"' == current for _weak, opaque in _tags(header))
