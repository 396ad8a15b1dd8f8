"""Opaque, signed keyset cursors.

A cursor is ``1.<payload>.<mac>``: ``payload`` is base64url JSON ``{"d": "next"|"prev", "k": [key, id],
"b": binding}`` and ``mac`` an HMAC-SHA256 of ``1.<payload>`` under the cursor secret, so a client can
neither forge a position nor edit one. ``b`` is a digest of the sort and filters the cursor was issued
for: a cursor replayed with another sort or filter is refused rather than silently walking a different
order from a position that means nothing in it. The listing computes that digest once per request and
passes it to every encode and decode. The key is whatever JSON the listing put in; the listing turns it
back into typed values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from datasvc.envvalues import MIN_SECRET_BYTES
from datasvc.errors import FieldError, ValidationFailed

Direction = Literal["next", "prev"]

VERSION = "1"
MAX_CURSOR_CHARS = 1024  # a search term is at most 100 characters; a real cursor is far below this
_MAC_BYTES = 16  # 128 bits: far beyond guessing, and a shorter token


class InvalidCursor(ValidationFailed):
    """The ``cursor`` parameter is garbled, tampered with, or issued for another sort or filter."""

    def __init__(self, reason: str) -> None:
        super().__init__([FieldError("query.cursor", reason)])


@dataclass(frozen=True, slots=True)
class Cursor:
    """A position: the page after (``next``) or before (``prev``) the row whose sort key is ``key``."""

    direction: Direction
    key: Sequence[Any]


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def binding_digest(binding: Sequence[Any]) -> str:
    """A short, stable digest of what a cursor is bound to (sort key, direction, filters)."""
    return _b64encode(hashlib.sha256(orjson.dumps(list(binding))).digest()[:12])


class CursorCodec:
    """Signs and verifies cursors with one secret; every failure is a 422 naming ``query.cursor``."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ValueError(f"the cursor secret must be at least {MIN_SECRET_BYTES} bytes")
        self._secret = secret

    def _mac(self, signed: str) -> str:
        digest = hmac.new(self._secret, signed.encode("ascii"), hashlib.sha256).digest()
        return _b64encode(digest[:_MAC_BYTES])

    def encode(self, cursor: Cursor, bound: str) -> str:
        """A token for ``cursor``, valid only with the sort and filters whose digest is ``bound``."""
        payload = {"d": cursor.direction, "k": list(cursor.key), "b": bound}
        signed = f"{VERSION}.{_b64encode(orjson.dumps(payload))}"
        return f"{signed}.{self._mac(signed)}"

    def decode(self, token: str, bound: str) -> Cursor:
        """The cursor ``token`` encodes, if this service signed it for this very ``bound`` digest."""
        if len(token) > MAX_CURSOR_CHARS or not token.isascii():
            raise InvalidCursor("is not a cursor this service issued")
        parts = token.split(".")
        if len(parts) != 3 or parts[0] != VERSION:
            raise InvalidCursor("is not a cursor this service issued")
        signed = f"{parts[0]}.{parts[1]}"
        if not hmac.compare_digest(self._mac(signed), parts[2]):
            # Most often a cursor from before a restart: name the setting that keeps them valid.
            raise InvalidCursor(
                "is not a cursor this service issued (bad signature): cursors are signed with "
                "DATASVC_CURSOR_SECRET, and where it is not set each start of the service picks a new "
                "secret, so a restart invalidates earlier cursors; start again without a cursor"
            )
        try:
            payload = orjson.loads(_b64decode(parts[1]))
        except (binascii.Error, ValueError):
            # Only reachable if the secret leaked; still a 4xx, never a 500.
            raise InvalidCursor("is not a cursor this service issued") from None
        if (
            not isinstance(payload, dict)
            or payload.get("d") not in ("next", "prev")
            or not isinstance(payload.get("k"), list)
        ):
            raise InvalidCursor("is not a cursor this service issued")
        if payload.get("b") != bound:
            raise InvalidCursor(
                "was issued for a different sort_by, sort_order or filters; repeat them as they were "
                "or start again without a cursor"
            )
        return Cursor(direction=payload["d"], key=payload["k"])
