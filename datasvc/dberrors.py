"""What asyncpg and the network raise, and what it means: a problem for the caller, and for the connection.

`translate` is the one boundary where lower-level errors become problems (`datasvc.errors`). asyncpg
exceptions are mapped by class, most specific first (`ASYNCPG_MAP`, looked up along the MRO), and filled
from ``sqlstate`` / ``constraint_name`` / ``column_name``, never from message text: messages are localized
and may quote the offending value. Nothing from the driver's message reaches a response body.

`CONNECTION_LOST`, `READ_ONLY` and `CONNECT_FAILED` say what an error means for the connection it came
from: `datasvc.pool` closes and replaces such connections, `datasvc.db` decides from them what to retry.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg
from asyncpg import exceptions as pg

from datasvc.errors import (
    Conflict,
    DatabaseOverloaded,
    DatabaseUnavailable,
    DatasvcError,
    Deadlock,
    FieldError,
    GatewayTimeout,
    InternalError,
    LockTimeout,
    SchemaChanged,
    SchemaMissing,
    SerializationFailure,
    ServiceUnavailable,
    TransactionRolledBack,
    ValidationFailed,
)

# The connection died (backend terminated, server crashed or restarting, socket reset). Not
# QueryCanceledError: a statement that ran out of time would only run out of time again.
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    pg.PostgresConnectionError,
    pg.AdminShutdownError,
    pg.CrashShutdownError,
    pg.CannotConnectNowError,
    ConnectionError,
    # A backend that sent FATAL while its connection sat idle in the pool leaves asyncpg's protocol stuck
    # ("cannot switch to state 12; another operation (2) is in progress", MagicStack/asyncpg#1069).
    asyncpg.InternalClientError,
)
# The server refused a write as read-only: the connection reaches a standby (a demoted primary after a
# failover). The statement did nothing; the pool's connections to that server are of no use for writes.
READ_ONLY: tuple[type[BaseException], ...] = (pg.ReadOnlySQLTransactionError,)
# What opening a connection raises when the server is down or refuses it.
CONNECT_FAILED: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)


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
