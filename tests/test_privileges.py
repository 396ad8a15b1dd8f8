"""Issue 14.2: the service warns at start-up when it connects as a superuser or as the schema's owner."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from datasvc.app import create_app
from datasvc.settings import Settings
from tests.support import load
from tests.support.pgserver import as_role

WARNING = "CONNECTED WITH MORE RIGHTS THAN NEEDED"


def _checked(settings: Settings, caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    """Start the app and wait for its one privilege check: the record it logged."""
    with caplog.at_level(logging.INFO, logger="datasvc.privileges"), TestClient(create_app(settings)):
        deadline = time.monotonic() + 30  # a bound on a hang: the check runs at start-up
        while True:
            found = [r for r in caplog.records if r.name == "datasvc.privileges"]
            if found:
                assert len(found) == 1
                return found[0]
            assert time.monotonic() < deadline, "the privilege check logged nothing"
            time.sleep(0.01)


@pytest.fixture
def owner_login(database_url: str) -> Iterator[str]:
    """A login role of this test's own, member of datasvc_owner (roles are cluster-wide)."""
    name = f"datasvc_test_owner_{os.getpid()}"

    async def run(*statements: str) -> None:
        async with load.admin(database_url) as admin:
            await admin.run("roles.name_role", name)
            for statement in statements:
                await admin.run(statement)

    asyncio.run(run("roles.drop_login", "roles.create_login", "roles.grant_owner"))
    try:
        yield name
    finally:
        asyncio.run(run("roles.drop_login"))


def test_a_superuser_login_is_warned_about(settings, caplog):
    record = _checked(settings, caplog)  # the test cluster's postgres
    assert record.levelno == logging.WARNING
    assert WARNING in record.getMessage()
    assert "a superuser" in record.getMessage()


def test_a_member_of_the_schema_owner_is_warned_about(settings, database_url, owner_login, caplog):
    record = _checked(settings.with_overrides(database_url=as_role(database_url, owner_login)), caplog)
    assert record.levelno == logging.WARNING
    assert "the schema owner" in record.getMessage()
    assert "superuser" not in record.getMessage()


def test_the_runtime_role_is_not_warned_about(settings, database_url, caplog):
    record = _checked(settings.with_overrides(database_url=as_role(database_url, "datasvc_app")), caplog)
    assert record.levelno == logging.INFO
    assert getattr(record, "role", None) == "datasvc_app"
