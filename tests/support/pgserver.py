"""The PostgreSQL server the tests use: ``DATASVC_TEST_DATABASE_URL``, else the machine's on 127.0.0.1:5432.

One place that reads the variable, so every helper that reaches the server (the fixtures in conftest.py,
the fault proxy's upstream) agrees on it; the databases the tests create on it (`clone_of`, `new_name`)
and the URL of a database as another role (`as_role`). `scripts/test` sets the variable to a private
cluster it starts when no server answers and the variable is unset.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

from pytest_postgresql.janitor import DatabaseJanitor

# The service's runtime role (migration 0004): what production connects as.
APP_ROLE = "datasvc_app"
_counter = itertools.count()

SERVER_URL = os.environ.get("DATASVC_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def server() -> dict[str, object]:
    """The server's user, password, host and port, as pytest-postgresql's `DatabaseJanitor` takes them."""
    parts = urlsplit(SERVER_URL)
    return {
        "user": parts.username or "postgres",
        "password": parts.password,
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 5432,
    }


def address() -> tuple[str, int]:
    """The server's host and port, for what connects below libpq (the fault proxy)."""
    parts = urlsplit(SERVER_URL)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def url_for(dbname: str) -> str:
    """The URL of database ``dbname`` on the test server."""
    s = server()
    auth = f"{s['user']}:{s['password']}" if s["password"] else str(s["user"])
    return f"postgresql://{auth}@{s['host']}:{s['port']}/{dbname}"


def as_role(database_url: str, role: str) -> str:
    """``database_url`` as ``role`` (no password: the test server trusts loopback)."""
    parts = urlsplit(database_url)
    host = parts.hostname or "127.0.0.1"
    return urlunsplit(parts._replace(netloc=f"{role}@{host}:{parts.port or 5432}"))


def new_name(prefix: str) -> str:
    """A database name no other test of any process uses: ``prefix``, this process's id, a counter."""
    return f"{prefix}_{os.getpid()}_{next(_counter)}"


@contextmanager
def clone_of(template: str) -> Iterator[str]:
    """A fresh copy of the template database ``template``, dropped afterwards; its URL."""
    name = new_name("datasvc_test")
    with DatabaseJanitor(dbname=name, template_dbname=template, **server()):  # type: ignore[arg-type]
        yield url_for(name)
