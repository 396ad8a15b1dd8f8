"""Every failure the service reports, and the one place lower-level errors become problems.

The tree (each leaf is one RFC 9457 ``type``)::

    DatasvcError
    ├── ClientError                       4xx: the caller can fix the request
    │   ├── BadRequest            400     malformed JSON, unreadable query or cursor
    │   ├── Unauthorized          401     no or unknown bearer token; carries ``WWW-Authenticate``
    │   ├── Forbidden             403     the caller's token lacks the operation's scope
    │   ├── NotFound              404     no such resource or route
    │   ├── MethodNotAllowed      405     carries ``Allow``
    │   ├── Conflict              409     names the field already taken
    │   ├── PreconditionFailed    412     ``If-Match`` does not match
    │   ├── PayloadTooLarge       413
    │   ├── HeadersTooLarge       431     request line + headers over the bound (datasvc.protocol)
    │   ├── UnsupportedMediaType  415
    │   ├── TooManyRequests       429     one caller over its in-flight share; carries ``Retry-After``
    │   └── ValidationFailed      422     lists each field and why
    └── ServerError                       5xx: retry or page someone
        ├── InternalError         500     no detail, ever
        ├── ServiceUnavailable    503     carries ``Retry-After``
        │   └── PoolTimeout               no pooled connection within acquire_timeout
        └── GatewayTimeout        504     the statement ran out of time

asyncpg exceptions are mapped by class, most specific first (`ASYNCPG_MAP`, looked up along the MRO),
and filled from ``sqlstate`` / ``constraint_name`` / ``column_name``, never from message text: messages are
localized and may quote the offending value. Nothing from the driver's message reaches a response body.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from asyncpg import exceptions as pg

PROBLEM_BASE = "urn:datasvc:problem:"


@dataclass(frozen=True, slots=True)
class FieldError:
    """One offending input: where it was (``body.email``, ``query.limit``, ``path.id``) and why."""

    field: str
    reason: str


class DatasvcError(Exception):
    """Base of every error the service answers with; subclasses fix status, slug and title."""

    status = 500
    slug = "internal-error"
    title = "Internal server error"

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail

    def headers(self) -> dict[str, str]:
        return {}

    def extensions(self) -> dict[str, Any]:
        return {}

    @property
    def type(self) -> str:
        return PROBLEM_BASE + self.slug


class ClientError(DatasvcError):
    status = 400
    slug = "bad-request"
    title = "Bad request"


class BadRequest(ClientError):
    pass


class Unauthorized(ClientError):
    status = 401
    slug = "unauthorized"
    title = "Unauthorized"

    def __init__(self, detail: str | None = None, *, invalid: bool = False) -> None:
        super().__init__(detail)
        self.invalid = invalid

    def headers(self) -> dict[str, str]:
        # RFC 6750 section 3: name the scheme; say "invalid_token" only when one was presented.
        return {"WWW-Authenticate": 'Bearer error="invalid_token"' if self.invalid else "Bearer"}


class Forbidden(ClientError):
    status = 403
    slug = "forbidden"
    title = "Forbidden"


class NotFound(ClientError):
    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(ClientError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"

    def __init__(self, allow: Sequence[str], detail: str | None = None) -> None:
        super().__init__(detail)
        self.allow = sorted(set(allow))

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allow)}


class Conflict(ClientError):
    status = 409
    slug = "conflict"
    title = "Conflict"

    def __init__(self, detail: str | None = None, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.field = field

    def extensions(self) -> dict[str, Any]:
        return {"field": self.field} if self.field else {}


class PreconditionFailed(ClientError):
    status = 412
    slug = "precondition-failed"
    title = "Precondition failed"


class PayloadTooLarge(ClientError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class HeadersTooLarge(ClientError):
    status = 431
    slug = "headers-too-large"
    title = "Request header fields too large"


class UnsupportedMediaType(ClientError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class TooManyRequests(ClientError):
    status = 429
    slug = "too-many-requests"
    title = "Too many requests"
    retry_after = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ValidationFailed(ClientError):
    status = 422
    slug = "validation-failed"
    title = "Validation failed"

    def __init__(self, errors: Sequence[FieldError], detail: str | None = None) -> None:
        super().__init__(detail or "; ".join(f"{e.field}: {e.reason}" for e in errors))
        self.errors = list(errors)

    def extensions(self) -> dict[str, Any]:
        return {"errors": [{"field": e.field, "reason": e.reason} for e in self.errors]}


class ServerError(DatasvcError):
    pass


class InternalError(ServerError):
    pass


class ServiceUnavailable(ServerError):
    status = 503
    slug = "service-unavailable"
    title = "Service unavailable"
    retry_after = 1

    def __init__(self, detail: str | None = None, *, slug: str | None = None) -> None:
        super().__init__(detail)
        if slug:
            self.slug = slug

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class PoolTimeout(ServiceUnavailable):
    slug = "pool-timeout"

    def __init__(self, waited: float) -> None:
        super().__init__(f"no database connection became free within {waited:g} s")


class GatewayTimeout(ServerError):
    status = 504
    slug = "statement-timeout"
    title = "Database statement timed out"


# Which request field a constraint guards: the database is the authority, this only names it.
CONSTRAINT_FIELDS: Mapping[str, str] = {
    "users_username_key": "username",
    "users_email_lower_key": "email",
    "users_email_check": "email",
    "users_username_check": "username",
    "users_hashed_password_check": "hashed_password",
    "users_full_name_check": "full_name",
    "users_bio_check": "bio",
    "users_status_check": "status",
}


def _unique(exc: pg.PostgresError) -> DatasvcError:
    field = CONSTRAINT_FIELDS.get(getattr(exc, "constraint_name", None) or "")
    what = f"{field} is already taken" if field else "a unique value is already taken"
    return Conflict(what, field=field)


def _integrity(exc: pg.PostgresError) -> DatasvcError:
    column = getattr(exc, "column_name", None)
    field = CONSTRAINT_FIELDS.get(getattr(exc, "constraint_name", None) or "") or column or "body"
    return ValidationFailed([FieldError(f"body.{field}", "rejected by a database constraint")])


def _data(exc: pg.PostgresError) -> DatasvcError:
    return ValidationFailed([FieldError("body", f"value rejected by the database (SQLSTATE {exc.sqlstate})")])


def _unavailable(slug: str, detail: str) -> Callable[[BaseException], DatasvcError]:
    return lambda _exc: ServiceUnavailable(detail, slug=slug)


def _timeout(_exc: BaseException) -> DatasvcError:
    return GatewayTimeout("the statement exceeded the configured statement timeout")


def _internal(_exc: BaseException) -> DatasvcError:
    return InternalError()


# Most specific class wins: lookup walks the exception's MRO and takes the first entry found.
ASYNCPG_MAP: Mapping[type[BaseException], Callable[[Any], DatasvcError]] = {
    pg.UniqueViolationError: _unique,
    pg.IntegrityConstraintViolationError: _integrity,
    pg.DataError: _data,
    pg.QueryCanceledError: _timeout,
    pg.LockNotAvailableError: _unavailable("lock-timeout", "the row is locked by another transaction"),
    pg.SerializationError: _unavailable("serialization-failure", "concurrent update; retry"),
    pg.DeadlockDetectedError: _unavailable("deadlock", "concurrent update; retry"),
    pg.TransactionRollbackError: _unavailable(
        "transaction-rolled-back", "the transaction was rolled back; retry"
    ),
    pg.TooManyConnectionsError: _unavailable("too-many-connections", "the database refuses new connections"),
    pg.CannotConnectNowError: _unavailable("database-starting", "the database is starting up"),
    pg.OperatorInterventionError: _unavailable("database-unavailable", "the database is shutting down"),
    pg.PostgresConnectionError: _unavailable("database-unavailable", "the database connection failed"),
    pg.InsufficientResourcesError: _unavailable("database-overloaded", "the database is out of resources"),
    pg.InvalidCachedStatementError: _unavailable("schema-changed", "the schema changed under a statement"),
    pg.UndefinedTableError: _unavailable("schema-missing", "the database schema is not migrated"),
    pg.UndefinedColumnError: _unavailable("schema-missing", "the database schema is not migrated"),
    pg.UndefinedFunctionError: _unavailable("schema-missing", "the database schema is not migrated"),
    asyncpg.ConnectionDoesNotExistError: _unavailable(
        "database-unavailable", "the database connection was lost"
    ),
    # asyncpg's state machine broke on a connection whose backend died while idle (asyncpg#1069);
    # its subclasses are other client-side faults.
    pg.OutdatedSchemaCacheError: _unavailable("schema-changed", "the schema changed under a statement"),
    pg.ProtocolError: _internal,
    pg.TargetServerAttributeNotMatched: _internal,
    asyncpg.InternalClientError: _unavailable("database-unavailable", "the database connection was lost"),
    asyncpg.InterfaceError: _internal,
    asyncpg.PostgresError: _internal,
    ConnectionError: _unavailable("database-unavailable", "the database cannot be reached"),
    OSError: _unavailable("database-unavailable", "the database cannot be reached"),
    asyncio.TimeoutError: _timeout,
}


def translate(exc: BaseException) -> DatasvcError:
    """The problem for any exception: ours as is, asyncpg's and the network's by class, else a 500."""
    if isinstance(exc, DatasvcError):
        return exc
    for cls in type(exc).__mro__:
        handler = ASYNCPG_MAP.get(cls)
        if handler is not None:
            return handler(exc)
    return InternalError()
