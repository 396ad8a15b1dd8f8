"""The PostgreSQL server the tests use: ``DATASVC_TEST_DATABASE_URL``, else the machine's on 127.0.0.1:5432.

One place that reads the variable, so every helper that reaches the server (the fixtures in conftest.py,
the fault proxy's upstream) agrees on it. `scripts/test` sets it to a private cluster it starts when no
server answers and the variable is unset.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit

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
