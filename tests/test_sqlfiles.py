"""One ``.sql`` file: its headers read into statements, every defect refused with ``file:line``."""

from pathlib import Path

import pytest

from datasvc.sqlfiles import (
    ExpectPlanCache,
    Kind,
    PlanCache,
    RegistryError,
    Retry,
    Route,
    parse_file,
    placeholders,
)

GOOD = """\
-- name: get_by_id :one
-- Fetch one thing.
-- params: id
-- expect-plan: Index Scan using things_pkey
SELECT id FROM things WHERE id = $1;

-- name: rename :exec
-- Rename a thing.
-- Second description line.
-- params: id, name
UPDATE things SET name = $2 WHERE id = $1
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.write_text(text)
    return path


def test_a_file_holds_statements_each_from_its_header(tmp_path):
    stmt, rename = parse_file(write(tmp_path, "basic.sql", GOOD), "things")
    assert (stmt.name, rename.name) == ("things.get_by_id", "things.rename")
    assert stmt.kind is Kind.ONE
    assert stmt.params == ("id",)
    assert stmt.plan == "Index Scan using things_pkey"
    assert stmt.sql == "SELECT id FROM things WHERE id = $1"
    assert stmt.line == 1
    assert rename.description == "Rename a thing. Second description line."
    assert rename.line == 7


def test_what_a_statement_may_do_is_declared_and_defaults_to_the_primary_without_resending(tmp_path):
    path = write(
        tmp_path,
        "x.sql",
        GOOD.replace(
            "-- expect-plan: Index Scan using things_pkey\n",
            "-- expect-plan: Index Scan using things_pkey\n"
            "-- route: replica\n-- retry: safe\n-- expect-plan-cache: generic\n",
        ),
    )
    read, write_ = parse_file(path, "things")
    assert (read.route, read.retry, read.plan_cache) == (Route.REPLICA, Retry.SAFE, PlanCache.AUTO)
    assert read.expect_plan_cache is ExpectPlanCache.GENERIC
    assert read.plan == "Index Scan using things_pkey"
    assert read.description == "Fetch one thing."
    assert (write_.route, write_.retry, write_.plan_cache) == (Route.PRIMARY, Retry.NEVER, PlanCache.AUTO)
    assert write_.expect_plan_cache is None


def test_text_carries_a_static_name_tag(tmp_path):
    stmt, _ = parse_file(write(tmp_path, "basic.sql", GOOD), "things")
    assert stmt.text.startswith("/* things.get_by_id */ SELECT")


BAD = {
    "empty": ("-- name: a :one\n-- d\n-- params:\n\n", r"x\.sql:1: statement 'a' is empty"),
    "unknown-kind": ("-- name: a :fetchall\n-- d\nSELECT 1\n", r"x\.sql:1: unknown result kind :fetchall"),
    "missing-kind": ("-- name: a\n-- d\nSELECT 1\n", r"x\.sql:1: 'a' has no result kind"),
    "undeclared-placeholder": (
        "-- name: a :one\n-- d\n-- params: id\nSELECT $1, $2\n",
        r"x\.sql:1: 'a' declares params \['id'\] but its SQL uses \['\$1', '\$2'\]",
    ),
    "unused-param": (
        "-- name: a :one\n-- d\n-- params: id, name\nSELECT $1\n",
        r"x\.sql:1: 'a' declares params \['id', 'name'\]",
    ),
    "gap": ("-- name: a :one\n-- d\n-- params: a, b\nSELECT $1, $3\n", r"but its SQL uses \['\$1', '\$3'\]"),
    "no-description": ("-- name: a :one\nSELECT 1\n", r"x\.sql:1: 'a' needs a description line"),
    "two-statements": ("-- name: a :exec\n-- d\nSELECT 1; SELECT 2\n", r"x\.sql:1: 'a' holds more than one"),
    "sql-before-header": ("SELECT 1;\n-- name: a :one\n-- d\nSELECT 1\n", r"x\.sql:1: SQL before the first"),
    "bad-name": ("-- name: Get-It :one\n-- d\nSELECT 1\n", r"x\.sql:1: statement name 'Get-It' must match"),
    "duplicate-param": ("-- name: a :one\n-- d\n-- params: a, a\nSELECT $1\n", r"x\.sql:3: params must be"),
    "unknown-route": (
        "-- name: a :one\n-- d\n-- route: standby\nSELECT 1\n",
        r"x\.sql:3: route must be one of",
    ),
    "unknown-retry": ("-- name: a :one\n-- d\n-- retry: yes\nSELECT 1\n", r"x\.sql:3: retry must be one of"),
    "unknown-plan-cache": (
        "-- name: a :one\n-- d\n-- plan-cache: force_custom_plan\nSELECT 1\n",
        r"x\.sql:3: plan-cache must be one of auto, custom",
    ),
    "generic-is-an-expectation": (
        "-- name: a :one\n-- d\n-- plan-cache: generic\nSELECT 1\n",
        r"x\.sql:3: plan-cache must be one of auto, custom, got 'generic'",
    ),
    "old-plan-key": (
        "-- name: a :one\n-- d\n-- plan: Seq Scan\nSELECT 1\n",
        r"x\.sql:3: '-- plan:' is now '-- expect-plan:'",
    ),
    "twice-declared": (
        "-- name: a :one\n-- d\n-- retry: safe\n-- retry: never\nSELECT 1\n",
        r"x\.sql:4: retry is declared twice",
    ),
    "replica-not-resendable": (
        "-- name: a :one\n-- d\n-- route: replica\nSELECT 1\n",
        r"x\.sql:1: 'a' is routed to a replica, so it must be a read declared '-- retry: safe'",
    ),
    "replica-exec": (
        "-- name: a :exec\n-- d\n-- route: replica\n-- retry: safe\nSELECT 1\n",
        r"x\.sql:1: 'a' is routed to a replica",
    ),
}


@pytest.mark.parametrize(("text", "message"), BAD.values(), ids=BAD.keys())
def test_refuses_to_load_a_defect_naming_file_and_line(tmp_path, text, message):
    path = write(tmp_path, "x.sql", text)
    with pytest.raises(RegistryError, match=message):
        parse_file(path, "ns")


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT $1, $2", {1, 2}),
        ("SELECT '$1' || $2", {2}),
        ("SELECT $1 -- not $2\n", {1}),
        ("SELECT /* $9 */ $1", {1}),
        ("SELECT $$ $7 $$, $tag$ $8 $tag$, $1", {1}),
        ('SELECT "$3" FROM t WHERE a = $1', {1}),
        ("SELECT 1", set()),
    ],
    ids=["plain", "string", "line-comment", "block-comment", "dollar-quotes", "identifier", "none"],
)
def test_placeholders_ignore_comments_and_literals(sql, expected):
    assert placeholders(sql) == expected
