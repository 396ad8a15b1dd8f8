"""Fixtures of the pooler tests: real PgBouncers in ``pool_mode=transaction``, and ``settings`` through them.

The two PgBouncers (1.24 with prepared statements, Debian's 1.18) are started once per test session,
each on a free port, and reach every per-test database under its own name. Within ``tests/pooler/``,
the ``settings`` fixture (and so ``client`` and everything built on it) is parametrised over the ways
an operator may run the service behind them: ``pgbouncer-1.24`` with asyncpg's statement cache on, and
``pgbouncer-1.18`` with it off (``DATASVC_STATEMENT_CACHE_SIZE=0``, required there), both as the runtime
role ``datasvc_app`` in ``DATASVC_POOL_MODE=transaction``. The direct connection is the rest of the suite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from datasvc.settings import Settings
from tests.support.pgbouncer import PgBouncer, through

# target → (PgBouncer version, DATASVC_STATEMENT_CACHE_SIZE)
TARGETS = {"pgbouncer-1.24": ("1.24", 100), "pgbouncer-1.18": ("1.18", 0)}


@pytest.fixture(scope="session")
def bouncers() -> Iterator[dict[str, PgBouncer]]:
    """PgBouncer 1.24 and 1.18, transaction pooling to the test server, by version."""
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
def plain_settings(database_url: str, tmp_path: Path) -> Settings:
    """The suite's usual settings, not parametrised: for tests that choose their pooler themselves."""
    return Settings(database_url=database_url, pool_min_size=1, pool_max_size=4, data_dir=tmp_path)


@pytest.fixture(params=list(TARGETS))
def settings(
    request: pytest.FixtureRequest, settings: Settings, database_url: str, bouncers: dict[str, PgBouncer]
) -> Settings:
    version, cache_size = TARGETS[request.param]
    return through(settings, bouncers[version], database_url, cache_size)
