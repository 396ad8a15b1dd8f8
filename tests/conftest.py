"""A real PostgreSQL for every test: migrations run once into a template, each test gets a fresh clone.

The server is the one at ``DATASVC_TEST_DATABASE_URL`` (default: the machine's PostgreSQL on
127.0.0.1:5432 as ``postgres``, trust auth; see tests/support/pgserver.py). `scripts/test` starts the
machine's cluster if it is down, or a private one when the machine has none. The helpers the tests share
(servers, proxies, clusters, loads, waits) are in tests/support/.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_postgresql.janitor import DatabaseJanitor
from starlette.testclient import TestClient

from datasvc import migrations
from datasvc.app import create_app
from datasvc.settings import PROJECT_ROOT, Settings
from tests.support.pgbouncer import TARGETS, PgBouncer, through
from tests.support.pgserver import clone_of, new_name, url_for
from tests.support.pgserver import server as _server

MIGRATIONS = PROJECT_ROOT / "migrations"


def _apply_migrations(*, dbname: str, **_: object) -> None:
    migrations.apply(url_for(dbname), MIGRATIONS)


@pytest.fixture(scope="session")
def template_db() -> Iterator[str]:
    """A database with every migration applied, marked as a template for fast clones."""
    name = f"datasvc_tmpl_{os.getpid()}"
    janitor = DatabaseJanitor(dbname=name, as_template=True, **_server())  # type: ignore[arg-type]
    with janitor:
        janitor.load(_apply_migrations)
        yield name


@pytest.fixture
def database_url(template_db: str) -> Iterator[str]:
    """A fresh, migrated database for one test, dropped afterwards."""
    with clone_of(template_db) as url:
        yield url


@pytest.fixture
def empty_database_url() -> Iterator[str]:
    """A database with no schema at all, for migration tests."""
    name = new_name("datasvc_empty")
    with DatabaseJanitor(dbname=name, **_server()):  # type: ignore[arg-type]
        yield url_for(name)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test marked `pooler` runs once per target: the HTTP contract through each pooler."""
    if metafunc.definition.get_closest_marker("pooler") and "target" in metafunc.fixturenames:
        metafunc.parametrize("target", list(TARGETS), indirect=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``@pytest.mark.pooler(name=value)``: through the poolers, only the variant whose ``name`` is ``value``.

    A test parametrised at home runs through the poolers with one representative value, which keeps the
    poolers' share of the suite within seconds; directly it runs with every value.
    """
    kept, dropped = [], []
    for item in items:
        marker = item.get_closest_marker("pooler")
        callspec = getattr(item, "callspec", None)
        params: dict[str, object] = callspec.params if callspec is not None else {}
        through_a_pooler = params.get("target", "direct") != "direct"
        if marker and through_a_pooler and any(params.get(k) != v for k, v in marker.kwargs.items()):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


@pytest.fixture(scope="session")
def bouncers() -> Iterator[dict[str, PgBouncer]]:
    """PgBouncer 1.24 and 1.18, transaction pooling to the test server, by version: started once."""
    started: dict[str, PgBouncer] = {}
    try:
        for version in ("1.24", "1.18"):
            started[version] = PgBouncer(version)
            started[version].start()
        yield started
    finally:
        for bouncer in started.values():
            bouncer.stop()


@pytest.fixture
def target(request: pytest.FixtureRequest) -> str:
    """``direct``, or a pooler of `TARGETS` for a test marked `pooler`."""
    return str(getattr(request, "param", "direct"))


@pytest.fixture
def settings(database_url: str, tmp_path: Path, target: str, request: pytest.FixtureRequest) -> Settings:
    """The service's settings against this test's database, through the test's `target`."""
    direct = Settings(
        database_url=database_url,
        pool_min_size=1,
        pool_max_size=4,
        acquire_timeout=2.0,
        statement_timeout=5.0,
        data_dir=tmp_path,
    )
    pooled = TARGETS[target]
    if pooled is None:
        return direct
    version, cache_size = pooled
    bouncer = request.getfixturevalue("bouncers")[version]
    return through(direct, bouncer, database_url, cache_size)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app with its lifespan running, against this test's database."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
