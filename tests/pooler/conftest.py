"""Fixtures of the pooler tests: the service's settings before a pooler is chosen.

These tests start or pick their PgBouncer themselves (the session's ``bouncers`` of tests/conftest.py,
or one of their own). The HTTP contract through the poolers is not here: the contract tests of the suite
are marked ``pooler`` where they live and run there once per target (tests/conftest.py, ``TARGETS``):
``pytest -m pooler`` runs them all.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from datasvc.settings import Settings


@pytest.fixture
def plain_settings(database_url: str, tmp_path: Path) -> Settings:
    """The suite's usual settings, not parametrised: for tests that choose their pooler themselves."""
    return Settings(database_url=database_url, pool_min_size=1, pool_max_size=4, data_dir=tmp_path)
