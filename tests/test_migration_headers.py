"""Every migration says what it builds on where a reader looks first: `-- depends:` on its first line.

yoyo reads ``-- depends:`` anywhere in a file's leading comments; we put it on line 1, so the order of the
schema's history reads off the first lines of migrations/. The migrations applied before this rule keep
it where they had it: their bytes are recorded when applied (`datasvc migrate`'s drift check), and an
edit would report every database that has them as drifted.
"""

from __future__ import annotations

import re

import pytest

from datasvc import migrations
from datasvc.settings import PROJECT_ROOT

MIGRATIONS = PROJECT_ROOT / "migrations"
SHIPPED = migrations.local_ids(MIGRATIONS)
# Applied before the rule: the line their `-- depends:` is on, frozen with their bytes.
FROZEN = {
    "0001.create-users": 2,
    "0002.users-listing-indexes": 2,
    "0003.runtime-roles": 4,
    "0004.users-search-index": 3,
    "0005.users-version": 2,
    "0006.users-index-review": 2,
    "0007.email-caseless": 2,
    "0008.runtime-role-settings": 5,
    "0009.users-counts": 4,
    "0010.users-counts-index": 3,
    "0011.users-status-index-comment": 3,
}
DEPENDS = re.compile(r"^-- depends:((?: [0-9]{4}\.[a-z0-9-]+)*)$")


def _depends_line(migration: str) -> tuple[int, list[str]]:
    lines = (MIGRATIONS / f"{migration}.sql").read_text().splitlines()
    found = [(n, m) for n, line in enumerate(lines, 1) if (m := DEPENDS.match(line))]
    assert len(found) == 1, f"{migration}.sql: one '-- depends:' line, got {len(found)}"
    number, match = found[0]
    return number, match.group(1).split()


@pytest.mark.parametrize("migration", SHIPPED)
def test_depends_is_on_the_first_line_and_names_earlier_migrations(migration: str) -> None:
    number, named = _depends_line(migration)
    assert number == FROZEN.get(migration, 1), f"{migration}.sql:{number}: '-- depends:' belongs on line 1"
    earlier = SHIPPED[: SHIPPED.index(migration)]
    assert set(named) <= set(earlier), f"{migration}.sql: depends on {set(named) - set(earlier)}, not earlier"
    if migration not in FROZEN:
        assert named, f"{migration}.sql:1: name the migrations it builds on"


def test_the_frozen_list_holds_only_shipped_migrations() -> None:
    assert set(FROZEN) <= set(SHIPPED)
