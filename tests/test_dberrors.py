"""The asyncpg → problem mapping is complete: every driver exception class lands somewhere deliberate."""

import inspect

import asyncpg
import pytest
from asyncpg import exceptions as pg

from datasvc.dberrors import translate
from datasvc.errors import (
    ClientError,
    Conflict,
    DatabaseUnavailable,
    GatewayTimeout,
    InternalError,
    ServiceUnavailable,
    ValidationFailed,
)


def _all_asyncpg_classes() -> list[type[BaseException]]:
    return sorted(
        {
            cls
            for _, cls in inspect.getmembers(pg, inspect.isclass)
            if issubclass(cls, BaseException) and cls.__module__.startswith("asyncpg")
        },
        key=lambda c: c.__name__,
    )


def _instance(cls: type[BaseException]) -> BaseException:
    exc = cls.__new__(cls)
    Exception.__init__(exc, "message that must not leak: SELECT secret FROM users")
    return exc


# SQLSTATE class (first two characters) → the problem status every exception of that class must map to.
EXPECTED_BY_CLASS = {
    "08": 503,  # connection exception
    "22": 422,  # data exception
    "28": 503,  # invalid authorization specification: raised only while connecting (bad password, pg_hba)
    "3D": 503,  # invalid catalog name: only while connecting (no such database)
    "23": 422,  # integrity constraint violation (23505 is 409, checked below)
    "40": 503,  # transaction rollback: serialization failure, deadlock
    "53": 503,  # insufficient resources, too many connections
    "57": 503,  # operator intervention (57014 query canceled is 504, checked below)
}
EXACT = {
    "23505": 409,
    "57014": 504,
    "55P03": 503,
    "42P01": 503,
    "42703": 503,
    "42883": 503,
    "25006": 503,  # read-only transaction: a write reached a standby during a failover
}


@pytest.mark.parametrize("cls", _all_asyncpg_classes(), ids=lambda c: c.__name__)
def test_every_asyncpg_exception_maps_deliberately(cls):
    problem = translate(_instance(cls))
    sqlstate = getattr(cls, "sqlstate", None)
    if sqlstate in EXACT:
        expected = EXACT[sqlstate]
    elif sqlstate and sqlstate[:2] in EXPECTED_BY_CLASS:
        expected = EXPECTED_BY_CLASS[sqlstate[:2]]
    elif issubclass(cls, (asyncpg.ConnectionDoesNotExistError, pg.InvalidCachedStatementError)):
        expected = 503
    elif cls in (asyncpg.InternalClientError, pg.OutdatedSchemaCacheError):
        expected = 503  # a connection broken under asyncpg (asyncpg#1069); a schema change: both retryable
    elif cls is pg.TargetServerAttributeNotMatched:
        expected = 503  # no server of a multi-host DATABASE_URL accepts writes yet: a failover
    else:
        expected = 500
    assert problem.status == expected, f"{cls.__name__} ({sqlstate}) → {problem.status}, expected {expected}"


def test_most_specific_class_wins():
    assert isinstance(translate(_instance(pg.UniqueViolationError)), Conflict)
    assert isinstance(translate(_instance(pg.CheckViolationError)), ValidationFailed)
    assert isinstance(translate(_instance(pg.QueryCanceledError)), GatewayTimeout)
    assert isinstance(translate(_instance(pg.AdminShutdownError)), ServiceUnavailable)


def test_unique_violation_names_the_field_from_the_constraint():
    exc = _instance(pg.UniqueViolationError)
    exc.constraint_name = "users_email_caseless_key"  # type: ignore[attr-defined]
    problem = translate(exc)
    assert isinstance(problem, Conflict)
    assert problem.field == "email"
    assert problem.extensions() == {"field": "email"}


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (ConnectionRefusedError(), 503),
        (ConnectionResetError(), 503),
        (OSError("network unreachable"), 503),
        (TimeoutError(), 504),
        (RuntimeError("boom"), 500),
    ],
    ids=["refused", "reset", "oserror", "timeout", "unknown"],
)
def test_network_and_unknown_errors(exc, status):
    assert translate(exc).status == status


def test_no_driver_text_reaches_the_problem():
    for cls in _all_asyncpg_classes():
        problem = translate(_instance(cls))
        assert "SELECT" not in (problem.detail or ""), cls
        assert "secret" not in str(problem.extensions()), cls


def test_retryable_problems_carry_retry_after_and_client_errors_do_not():
    assert "Retry-After" in translate(_instance(pg.SerializationError)).headers()
    assert "Retry-After" in translate(_instance(pg.TooManyConnectionsError)).headers()
    problem = translate(_instance(pg.NotNullViolationError))
    assert isinstance(problem, ClientError)
    assert problem.headers() == {}
    assert isinstance(translate(_instance(pg.InternalServerError)), InternalError)


@pytest.mark.parametrize(
    ("cls", "why"),
    [
        (pg.InvalidCatalogNameError, "does not exist"),
        (pg.InvalidPasswordError, "password"),
        (pg.InvalidAuthorizationSpecificationError, "role"),
        (pg.TooManyConnectionsError, "too many connections"),
        (pg.CannotConnectNowError, "starting up"),
    ],
    ids=["3D000", "28P01", "28000", "53300", "57P03"],
)
def test_a_refused_connection_is_database_unavailable_saying_why(cls, why):
    problem = translate(_instance(cls))
    assert isinstance(problem, DatabaseUnavailable)
    assert why in (problem.detail or "")
    assert f"SQLSTATE {cls.sqlstate}" in (problem.detail or "")
    assert problem.headers() == {"Retry-After": "1"}
