"""Caller authentication: bearer tokens, each naming a caller and the scopes it holds.

Tokens are configured hashed (sha256, hex) from ``DATASVC_AUTH_TOKENS`` and/or the file named by
``DATASVC_AUTH_TOKENS_FILE``, one token a line (``;`` also separates entries in the variable)::

    # caller  scopes                       sha256 of the token (`datasvc token hash`)
    billing   users:read                   9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
    login     users:read,credentials:read  60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752

A presented token is hashed and compared with every configured hash in constant time
(`hmac.compare_digest`), so neither the match nor its position leaks through timing. With no token
configured the service runs open (any caller may do anything) and says so at start-up.

Operations that name a ``scope`` require it; the others (health, ``/openapi.json``) stay open, so load
balancers and schema readers need no token.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from datasvc.context import request_caller
from datasvc.errors import Forbidden, Unauthorized
from datasvc.settings import SettingsError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.types import Scope

    from datasvc.routing import Operation
    from datasvc.settings import Settings

log = logging.getLogger("datasvc.auth")

SCOPES = frozenset({"users:read", "users:write", "credentials:read", "changes:read"})

_CALLER = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
# RFC 6750 b64token, with a length bound so hashing an absurd header costs nothing.
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9._~+/-]{1,512}=*) *$", re.IGNORECASE)


class AuthConfigError(SettingsError):
    """A token entry the service cannot use; names where it came from."""


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling and what it may do."""

    name: str
    scopes: frozenset[str]


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    caller: Caller


def hash_token(token: str) -> str:
    """The configured form of a token: sha256 of its UTF-8 bytes, lowercase hex."""
    return hashlib.sha256(token.encode()).hexdigest()


def parse_entries(text: str, source: str) -> list[tuple[str, Caller]]:
    """``caller scopes sha256`` entries, one a line (or ``;``-separated); ``#`` starts a comment."""
    out: list[tuple[str, Caller]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        for chunk in line.split("#", 1)[0].split(";"):
            fields = chunk.split()
            if not fields:
                continue
            where = f"{source}:{lineno}"
            if len(fields) != 3:
                raise AuthConfigError(f"{where}: expected 'caller scopes sha256hex' ({len(fields)} fields)")
            name, scopes_text, digest = fields
            if not _CALLER.match(name):
                raise AuthConfigError(f"{where}: caller name must be 1-40 of [A-Za-z0-9_.-]")
            scopes = frozenset(s for s in scopes_text.split(",") if s)
            if unknown := scopes - SCOPES:
                raise AuthConfigError(f"{where}: unknown scope(s) {sorted(unknown)}; known: {sorted(SCOPES)}")
            if not scopes:
                raise AuthConfigError(f"{where}: at least one scope is needed")
            if not SHA256_HEX.match(digest):
                raise AuthConfigError(f"{where}: the token must be given as 64 lowercase hex (sha256)")
            out.append((digest, Caller(name, scopes)))
    return out


class Authenticator:
    """Checks the ``Authorization`` header of a request against the configured token hashes.

    Whether tokens are required is decided once, at start-up (`enabled`); the set of tokens may change
    (`replace`, when the tokens file is re-read) but never turns a service that required tokens into an
    open one: an empty set refuses every caller.
    """

    def __init__(self, entries: Iterable[tuple[str, Caller]] = (), *, required: bool | None = None) -> None:
        self._entries = _index(entries)
        self.enabled = bool(self._entries) if required is None else required

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator:
        entries = env_entries(settings)
        path = settings.auth_tokens_file
        if path is not None:
            entries += parse_entries(read_tokens_file(path), str(path))
        configured = bool(entries) or path is not None
        if settings.auth == "off" and configured:
            raise AuthConfigError(
                "DATASVC_AUTH=off, yet tokens are configured (DATASVC_AUTH_TOKENS or "
                "DATASVC_AUTH_TOKENS_FILE): unset one or the other"
            )
        # A tokens file, even an empty one, means tokens are wanted: it may be filled while we run.
        return cls(entries, required=configured)

    def replace(self, entries: Iterable[tuple[str, Caller]]) -> None:
        """Serve with these tokens from now on; a bad set (a token twice) raises and changes nothing."""
        self._entries = _index(entries)

    def callers(self) -> list[str]:
        return sorted({e.caller.name for e in self._entries})

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller a header's bearer token belongs to, or `Unauthorized`."""
        if not authorization:
            raise Unauthorized("send 'Authorization: Bearer <token>'")
        match = _BEARER.match(authorization)
        if match is None:
            # RFC 6750 section 3.1: another scheme (Basic ...) presented no bearer token, so the challenge
            # names no error; a malformed bearer token is an invalid one.
            bearer = authorization.split(None, 1)[0].lower() == "bearer"
            raise Unauthorized("the Authorization header is not a bearer token", invalid=bearer)
        found = self._lookup(match.group(1))
        if found is None:
            raise Unauthorized("the bearer token is not valid", invalid=True)
        return found

    def identify(self, scope: Scope) -> str | None:
        """The caller a request's bearer token names, or None: no, malformed or unknown token.

        For the per-caller limit, which counts requests before routing; `authorize` still decides, with
        the caller found here (kept in the scope: the token is hashed once per request, not twice).
        """
        found = _caller_of(scope, self._identified)
        return found.name if found else None

    def _identified(self, authorization: str | None) -> Caller | None:
        match = _BEARER.match(authorization) if authorization else None
        return self._lookup(match.group(1)) if match else None

    def _lookup(self, token: str) -> Caller | None:
        presented = hashlib.sha256(token.encode()).digest()
        found: Caller | None = None
        # Every entry is compared, whatever matched before: the time taken says nothing about which.
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, presented):
                found = entry.caller
        return found

    def authorize(self, request: Request, operation: Operation) -> Caller | None:
        """The caller, checked for the operation's scope (401/403); `None` when open or not required."""
        if not self.enabled or operation.scope is None:
            return None
        caller = _caller_of(request.scope, self._identified) or self.authenticate(
            _authorization(request.scope)
        )
        request.scope.setdefault("state", {})["caller"] = caller.name  # the access log's "caller"
        request_caller.set(caller.name)  # and the database session's application_name
        if operation.scope not in caller.scopes:
            raise Forbidden(f"this operation needs the scope {operation.scope}")
        return caller

    def log_mode(self) -> None:
        if self.enabled:
            log.info("bearer-token authentication on", extra={"callers": self.callers()})
        else:
            log.warning(
                "AUTHENTICATION IS OFF: no token is configured, any caller may read and write every user "
                "and read password hashes; set DATASVC_AUTH_TOKENS or DATASVC_AUTH_TOKENS_FILE (off "
                "loopback `datasvc serve` starts so only with DATASVC_AUTH=off)"
            )


_FOUND = "datasvc.caller"  # the scope key under which a request's caller, once looked up, is kept


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            text: str = value.decode("latin-1")
            return text
    return None


def _caller_of(scope: Scope, lookup: Callable[[str | None], Caller | None]) -> Caller | None:
    """The caller of a request's token (None: no valid token), looked up once per request.

    `Authenticator.authenticate` still runs for a request without a valid token, to say why in its 401.
    """
    if _FOUND in scope:
        found: Caller | None = scope[_FOUND]
        return found
    found = scope[_FOUND] = lookup(_authorization(scope))
    return found


def env_entries(settings: Settings) -> list[tuple[str, Caller]]:
    """The tokens of ``DATASVC_AUTH_TOKENS``: fixed for the life of the process."""
    return parse_entries(settings.auth_tokens, "DATASVC_AUTH_TOKENS")


def read_tokens_file(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise AuthConfigError(f"DATASVC_AUTH_TOKENS_FILE={path}: {why}") from None


def _index(entries: Iterable[tuple[str, Caller]]) -> list[_Entry]:
    out: list[_Entry] = []
    seen: set[str] = set()
    for digest, caller in entries:
        if digest in seen:
            raise AuthConfigError(f"the token of caller {caller.name!r} is configured twice")
        seen.add(digest)
        out.append(_Entry(bytes.fromhex(digest), caller))
    return out
