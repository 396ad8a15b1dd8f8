"""The HTTP contract through PgBouncer 1.24 (cache on) and 1.18 (cache off), in transaction mode.

A representative subset of the suite's own tests, collected here again so that they run with this
folder's ``settings`` (conftest.py): CRUD, the listing with cursor walks, ETag and If-Match races, the
transaction retries, and the caller's application_name. Each is the same function as in its home module
(a contract change there is tested through both poolers without a copy to update); those parametrised
at home run here with one representative value (called through their module, so that they are not
collected here with all their values), to keep the folder within seconds per target.
"""

from __future__ import annotations

from starlette.testclient import TestClient

from datasvc.db import Database
from datasvc.settings import Settings
from tests import test_faults_retries as retries
from tests.test_auth import auth_settings, test_the_callers_name_reaches_the_database_session
from tests.test_concurrency import (
    base_url,
    test_concurrent_patches_with_if_match_exactly_one_wins_per_version,
    test_fifty_concurrent_creates_of_one_username_make_one_row,
)
from tests.test_etag import (
    test_if_none_match_current_is_304_without_a_body,
    test_patch_with_a_stale_etag_is_412_and_changes_nothing,
    test_patch_with_the_current_etag_applies_and_moves_the_etag,
    user,
)
from tests.test_faults_retries import db
from tests.users import test_listing as listing
from tests.users.test_listing import test_the_offset_envelope
from tests.users.test_users_api import (
    alice,
    test_create_returns_201_the_user_and_location,
    test_delete_is_204_then_404,
    test_duplicate_username_is_409_naming_username,
    test_get_by_email_ignores_case,
    test_get_by_id,
    test_patch_changes_only_the_given_fields,
)

__all__ = [
    "alice",
    "auth_settings",
    "base_url",
    "db",
    "test_concurrent_patches_with_if_match_exactly_one_wins_per_version",
    "test_create_returns_201_the_user_and_location",
    "test_delete_is_204_then_404",
    "test_duplicate_username_is_409_naming_username",
    "test_fifty_concurrent_creates_of_one_username_make_one_row",
    "test_get_by_email_ignores_case",
    "test_get_by_id",
    "test_if_none_match_current_is_304_without_a_body",
    "test_patch_changes_only_the_given_fields",
    "test_patch_with_a_stale_etag_is_412_and_changes_nothing",
    "test_patch_with_the_current_etag_applies_and_moves_the_etag",
    "test_the_callers_name_reaches_the_database_session",
    "test_the_offset_envelope",
    "user",
]


def test_a_walk_forwards_then_backwards_sees_every_row_once(client: TestClient, database_url: str) -> None:
    # full_name: the nullable key, the walk with the most cases (NULLs sort last, then first).
    listing.test_a_walk_forwards_then_backwards_sees_every_row_once(client, database_url, "full_name")


def test_a_walk_survives_a_concurrent_writer(client: TestClient, database_url: str) -> None:
    listing.test_a_walk_survives_a_concurrent_writer(client, database_url, "username")


def test_filters_select_the_rows_sql_selects(client: TestClient, database_url: str) -> None:
    where = "is_admin AND status = 'active'"  # a test-side SQL filter, compared with the service's page
    listing.test_filters_select_the_rows_sql_selects(
        client, database_url, {"is_admin": "true", "status": "active"}, where
    )


async def test_a_deadlocked_transaction_is_retried_and_both_commit(db: Database) -> None:
    await retries.test_rolled_back_transaction_is_retried_and_both_commit(db, "deadlock")


async def test_a_serialization_failure_is_retried_and_both_commit(db: Database) -> None:
    # The home test also asserts that exactly one transaction ran twice; behind the pooler's extra hop on
    # a loaded machine the retried one can start before the winner has committed and collide once more
    # (seen: attempts a=3, b=1), which is the retry doing its job. Both must still commit.
    results, attempts = await retries._collide(db, "serialization")
    assert sorted(map(str, results)) == ["a", "b"], (results, attempts)
    assert sum(attempts.values()) >= 3, attempts


async def test_retries_exhausted_is_503_with_retry_after_through_the_pooler(settings: Settings) -> None:
    await retries.test_retries_exhausted_is_503_with_retry_after(settings, "serialization")
