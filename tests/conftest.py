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


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        pool_min_size=1,
        pool_max_size=4,
        acquire_timeout=2.0,
        statement_timeout=5.0,
        data_dir=tmp_path,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    """The app with its lifespan running, against this test's database."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client
