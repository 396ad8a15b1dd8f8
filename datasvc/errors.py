"""Every failure the service reports: one class per RFC 9457 problem ``type``.

The tree (each leaf is one RFC 9457 ``type``, its ``slug``; only leaves are sent)::

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
        │   ├── NotMigrated               /health/ready: migrations pending
        │   └── ShuttingDown              SIGTERM received (the drain window), or the pool is closed
        ├── GatewayTimeout        504     the statement ran out of time
        └── DeadlineExceeded      504     past the caller's ``Prefer: wait=N``; the statement cancelled

What the driver and the network raise becomes one of these in `datasvc.dberrors.translate`, the one
boundary; this module only declares the problems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

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
