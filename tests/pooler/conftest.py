"""The pooler tests: within this folder, ``settings`` (and ``client``, ...) goes through each PgBouncer.

A test here that takes ``settings`` runs once per pooler of ``TARGETS`` (tests/support/pgbouncer.py:
``pgbouncer-1.24``, ``pgbouncer-1.18``), never directly: the direct connection is the rest of the
suite. A test that picks its PgBouncer itself takes ``plain_settings`` (the session's ``bouncers``, or
one of its own). The HTTP contract through the poolers is not here: the contract tests are marked
``pooler`` where they live and run there once per target, direct included (``pytest -m pooler``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datasvc.settings import Settings
from tests.support.pgbouncer import TARGETS

POOLERS = [target for target, pooled in TARGETS.items() if pooled is not None]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" in metafunc.fixturenames and not metafunc.definition.get_closest_marker("pooler"):
        metafunc.parametrize("target", POOLERS, indirect=True)


@pytest.fixture
def plain_settings(database_url: str, tmp_path: Path) -> Settings:
    """The suite's usual settings, not parametrised: for tests that choose their pooler themselves."""
    return Settings(database_url=database_url, pool_min_size=1, pool_max_size=4, data_dir=tmp_path)
