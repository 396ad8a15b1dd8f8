"""Every failure the service reports, and the one place lower-level errors become problems.

The tree (each leaf is one RFC 9457 ``type``, its ``slug``; `problem_types` lists them)::

    DatasvcError
    ├── ClientError                       4xx: the caller can fix the request
    │   ├── BadRequest            400     malformed JSON, unreadable query or cursor
    │   ├── Unauthorized          401     no or unknown bearer token; carries ``WWW-Authenticate``
    │   ├── Forbidden             403     the caller's token lacks the operation's scope
    │   ├── NotFound              404     no such resource or route
    │   ├── MethodNotAllowed      405     carries ``Allow``
    │   ├── NotAcceptable         406     no representation the ``Accept`` header takes (the export)
    │   ├── Conflict              409     names the field already taken
    │   ├── RequestTimeout        408     the body did not arrive within DATASVC_BODY_TIMEOUT
    │   ├── IdempotencyKeyInFlight 409    the first request with this Idempotency-Key has not answered yet
    │   ├── BatchItemsError               ``errors`` by item index and field; never sent itself
    │   │   ├── BatchConflict     409     items of a batch taken, or repeated in it
    │   │   └── BatchInvalid      422     items of a batch invalid
    │   ├── CursorExpired         410     a change-feed cursor whose next changes were purged
    │   ├── PreconditionFailed    412     ``If-Match`` does not match
    │   ├── PayloadTooLarge       413
    │   ├── HeadersTooLarge       431     request line + headers over the bound (datasvc.protocol)
    │   ├── UnsupportedMediaType  415
    │   ├── TooManyRequests       429     one caller over its in-flight share, or a second export of
    │   │                                 one caller; carries ``Retry-After``
    │   ├── IdempotencyKeyReused  422     the Idempotency-Key was used for another request
    │   └── ValidationFailed      422     lists each field and why (the first `MAX_LISTED`)
    └── ServerError                       5xx: retry or page someone
        ├── InternalError         500     no detail, ever
        ├── ServiceUnavailable            503, carries ``Retry-After``; never sent itself
        │   ├── Overloaded                more requests in flight than DATASVC_MAX_IN_FLIGHT (datasvc.limits)
        │   ├── PoolTimeout               no pooled connection within acquire_timeout
        │   ├── DatabaseUnavailable       cannot reach the database, it refused the connection (no such
        │   │                             database, bad password, too many connections…) or lost it
        │   ├── DatabaseOverloaded        the database is out of resources (disk, memory)
        │   ├── LockTimeout               the row stayed locked past lock_timeout
        │   ├── SerializationFailure      40001 still, after the retries
        │   ├── Deadlock                  40P01 still, after the retries
        │   ├── TransactionRolledBack     any other 40xxx
        │   ├── SchemaChanged             the schema changed under a prepared statement
        │   ├── SchemaMissing             a table, column or function the statement needs is not there
        │   └── NotMigrated               /health/ready: migrations pending
        ├── GatewayTimeout        504     the statement ran out of time
        └── DeadlineExceeded      504     past the caller's ``Prefer: wait=N``; the statement cancelled

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
    """Base of the 4xx answers; only its leaves are sent."""

    status = 400


class BadRequest(ClientError):
    slug = "bad-request"
    title = "Bad request"


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


class RequestTimeout(ClientError):
    status = 408
    slug = "request-timeout"
    title = "Request body not received in time"

    def headers(self) -> dict[str, str]:
        return {"Connection": "close"}  # the rest of the body may still come: the stream is lost


class NotAcceptable(ClientError):
    status = 406
    slug = "not-acceptable"
    title = "Not acceptable"


class CursorExpired(ClientError):
    status = 410
    slug = "cursor-expired"
    title = "Cursor expired"

    def extensions(self) -> dict[str, Any]:
        return {"field": "query.after"}


class IdempotencyKeyInFlight(ClientError):
    status = 409
    slug = "idempotency-key-in-flight"
    title = "A request with this Idempotency-Key is still in progress"
    retry_after = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


@dataclass(frozen=True, slots=True)
class ItemError:
    """One offending item of a batch: its index in the request, the field, and why."""

    index: int
    field: str
    reason: str


class BatchItemsError(ClientError):
    """Base of the batch answers that name each offending item; only its leaves are sent."""

    def __init__(self, errors: Sequence[ItemError], detail: str | None = None) -> None:
        super().__init__(detail or f"{len(errors)} item(s) refused; nothing was written")
        self.errors = list(errors)

    def extensions(self) -> dict[str, Any]:
        return {"errors": [{"index": e.index, "field": e.field, "reason": e.reason} for e in self.errors]}


class BatchConflict(BatchItemsError):
    status = 409
    slug = "batch-conflict"
    title = "Batch items conflict"


class BatchInvalid(BatchItemsError):
    status = 422
    slug = "batch-invalid"
    title = "Batch items invalid"


class IdempotencyKeyReused(ClientError):
    status = 422
    slug = "idempotency-key-reused"
    title = "Idempotency-Key used for another request"


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


# A 422 lists at most this many fields; ``errors_total`` then says how many there were.
MAX_LISTED = 20


class ValidationFailed(ClientError):
    status = 422
    slug = "validation-failed"
    title = "Validation failed"

    def __init__(self, errors: Sequence[FieldError], detail: str | None = None) -> None:
        # Listed up to MAX_LISTED: a 64 kB body of 6,000 unknown keys would otherwise get a 448 kB answer.
        listed = list(errors[:MAX_LISTED])
        more = len(errors) - len(listed)
        text = "; ".join(f"{e.field}: {e.reason}" for e in listed) + (f"; and {more} more" if more else "")
        super().__init__(detail or text)
        self.errors = listed
        self.total = len(errors)

    def extensions(self) -> dict[str, Any]:
        out: dict[str, Any] = {"errors": [{"field": e.field, "reason": e.reason} for e in self.errors]}
        if self.total > len(self.errors):
            out["errors_total"] = self.total
        return out


class ServerError(DatasvcError):
    """Base of the 5xx answers; only its leaves are sent."""


class InternalError(ServerError):
    slug = "internal-error"
    title = "Internal server error"


class ServiceUnavailable(ServerError):
    """Base of the 503s: the caller may retry after ``Retry-After`` seconds. Only its leaves are sent."""

    status = 503
    title = "Service unavailable"
    retry_after = 1

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Overloaded(ServiceUnavailable):
    slug = "overloaded"
    title = "Too many requests in flight"


class PoolTimeout(ServiceUnavailable):
    slug = "pool-timeout"
    title = "No database connection free"

    def __init__(self, waited: float) -> None:
        super().__init__(f"no database connection became free within {waited:g} s")


class DatabaseUnavailable(ServiceUnavailable):
    slug = "database-unavailable"
    title = "Database unavailable"


class DatabaseOverloaded(ServiceUnavailable):
    slug = "database-overloaded"
    title = "Database out of resources"


class LockTimeout(ServiceUnavailable):
    slug = "lock-timeout"
    title = "Row locked"


class SerializationFailure(ServiceUnavailable):
    slug = "serialization-failure"
    title = "Concurrent update"


class Deadlock(ServiceUnavailable):
    slug = "deadlock"
    title = "Deadlock"


class TransactionRolledBack(ServiceUnavailable):
    slug = "transaction-rolled-back"
    title = "Transaction rolled back"


class SchemaChanged(ServiceUnavailable):
    slug = "schema-changed"
    title = "Schema changed"


class SchemaMissing(ServiceUnavailable):
    slug = "schema-missing"
    title = "Schema missing"


class NotMigrated(ServiceUnavailable):
    slug = "not-migrated"
    title = "Database not migrated"


class ShuttingDown(ServiceUnavailable):
    slug = "shutting-down"
    title = "Shutting down"


class GatewayTimeout(ServerError):
    status = 504
    slug = "statement-timeout"
    title = "Database statement timed out"


class DeadlineExceeded(ServerError):
    """The caller's deadline (``Prefer: wait=N``) passed: the statement was cancelled, not the connection."""

    status = 504
    slug = "deadline-exceeded"
    title = "Deadline exceeded"
    retry_after = 1

    def __init__(self, wait: str) -> None:
        super().__init__(
            f"no answer within the {wait} s the caller asked for (Prefer: wait); nothing was kept"
        )
        self.wait = wait

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after), "Preference-Applied": f"wait={self.wait}"}


# Which request field a constraint guards: the database is the authority, this only names it.
CONSTRAINT_FIELDS: Mapping[str, str] = {
    "users_username_key": "username",
    "users_email_caseless_key": "email",
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


def _unavailable(cls: type[ServiceUnavailable], detail: str) -> Callable[[BaseException], DatasvcError]:
    return lambda _exc: cls(detail)


# Why the server refused a new connection, by SQLSTATE. PostgreSQL ends such a connection with FATAL;
# each of these is an outage of the service's database, whatever the caller sent: 503, not 500.
CONNECT_REFUSALS: Mapping[str, str] = {
    "3D000": "the database named in DATABASE_URL does not exist",
    "28P01": "the database refused the password",
    "28000": "the database refused the role (pg_hba.conf, a role that does not exist or may not log in)",
    "53300": "the database has too many connections (max_connections, or the role's or database's limit)",
    "57P03": "the database is starting up, shutting down or in recovery",
    "42501": "the role may not connect to the database (no CONNECT privilege)",
    "55000": "the database does not accept connections (datallowconn is false)",
}


def connect_refused(exc: BaseException) -> DatabaseUnavailable:
    """The 503 for a connection attempt the server refused; the detail says why without driver text."""
    sqlstate = getattr(exc, "sqlstate", None) or "unknown"
    reason = CONNECT_REFUSALS.get(sqlstate, "the database refused the connection")
    return DatabaseUnavailable(f"{reason} (SQLSTATE {sqlstate})")


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
    pg.LockNotAvailableError: _unavailable(LockTimeout, "the row is locked by another transaction"),
    pg.SerializationError: _unavailable(SerializationFailure, "concurrent update; retry"),
    pg.DeadlockDetectedError: _unavailable(Deadlock, "concurrent update; retry"),
    pg.TransactionRollbackError: _unavailable(TransactionRolledBack, "the transaction was rolled back"),
    # Raised only while connecting (SQLSTATE classes 28 and 3D, 53300, 57P03): the database is unusable.
    pg.InvalidAuthorizationSpecificationError: connect_refused,
    pg.InvalidCatalogNameError: connect_refused,
    pg.TooManyConnectionsError: connect_refused,
    pg.CannotConnectNowError: connect_refused,
    pg.OperatorInterventionError: _unavailable(DatabaseUnavailable, "the database is shutting down"),
    pg.PostgresConnectionError: _unavailable(DatabaseUnavailable, "the database connection failed"),
    pg.InsufficientResourcesError: _unavailable(DatabaseOverloaded, "the database is out of resources"),
    pg.InvalidCachedStatementError: _unavailable(SchemaChanged, "the schema changed under a statement"),
    pg.UndefinedTableError: _unavailable(SchemaMissing, "the database schema is not migrated"),
    pg.UndefinedColumnError: _unavailable(SchemaMissing, "the database schema is not migrated"),
    pg.UndefinedFunctionError: _unavailable(SchemaMissing, "the database schema is not migrated"),
    asyncpg.ConnectionDoesNotExistError: _unavailable(DatabaseUnavailable, "the connection was lost"),
    # asyncpg's state machine broke on a connection whose backend died while idle (asyncpg#1069);
    # its subclasses are other client-side faults.
    pg.OutdatedSchemaCacheError: _unavailable(SchemaChanged, "the schema changed under a statement"),
    pg.ProtocolError: _internal,
    # No server of a multi-host DATABASE_URL accepts writes (target_session_attrs=read-write): the primary
    # is down and no standby promoted yet. And a write refused as read-only (25006): the connection reached
    # a standby or a demoted primary. Both are a failover under way.
    pg.TargetServerAttributeNotMatched: _unavailable(
        DatabaseUnavailable, "no database server accepts writes now (failover in progress?)"
    ),
    pg.ReadOnlySQLTransactionError: _unavailable(
        DatabaseUnavailable, "the database server is read-only now (failover in progress?)"
    ),
    asyncpg.InternalClientError: _unavailable(DatabaseUnavailable, "the database connection was lost"),
    asyncpg.InterfaceError: _internal,
    asyncpg.PostgresError: _internal,
    ConnectionError: _unavailable(DatabaseUnavailable, "the database cannot be reached"),
    OSError: _unavailable(DatabaseUnavailable, "the database cannot be reached"),
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


def problem_types() -> dict[str, type[DatasvcError]]:
    """Every problem ``type`` the service can send (its slug) and its class: the leaves of the tree."""
    found: dict[str, type[DatasvcError]] = {}
    pending: list[type[DatasvcError]] = [DatasvcError]
    while pending:
        cls = pending.pop()
        children = cls.__subclasses__()
        pending += children
        if not children:
            if cls.slug in found:
                raise TypeError(f"{cls.__name__} and {found[cls.slug].__name__} share the slug {cls.slug}")
            found[cls.slug] = cls
    return found
