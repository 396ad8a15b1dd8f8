"""The ops commands of the CLI: `datasvc sql explain` (the migrate commands: tests/test_migrations.py)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from datasvc.cli import main
from datasvc.explain import convert
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT
from tests.support.values import HASH

REGISTRY = Registry.load(PROJECT_ROOT / "sql")


@pytest.fixture
def db_env(database_url, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", database_url)
    return database_url


def _user_by_username(url: str, username: str) -> object:
    async def run() -> object:
        conn = await asyncpg.connect(url)
        try:
            return await conn.fetchrow(REGISTRY["users.get_by_username"].text, username)
        finally:
            await conn.close()

    return asyncio.run(run())


def test_explain_analyze_prints_the_plan_with_buffers(db_env, capsys):
    assert main(["sql", "explain", "users.get_by_id", "--param", "id=1"]) == 0
    out = capsys.readouterr().out
    assert "-- expected plan: Index Scan using users_pkey on users" in out
    assert "Index Scan using users_pkey on users" in out
    assert "actual time=" in out
    assert "Execution Time:" in out


def test_explain_binds_null_for_optional_filters(db_env, capsys):
    argv = ["sql", "explain", "users.list__created_at_desc", "--no-analyze"]
    argv += ["--param", "count=none", "--param", "limit=21", "--param", "offset=0"]
    for name in ("status", "is_verified", "is_admin", "search", "cursor_key", "cursor_id"):
        argv += ["--null", name]
    assert main(argv) == 0
    assert "Index Scan" in capsys.readouterr().out


def test_explain_without_analyze_only_plans(db_env, capsys):
    assert main(["sql", "explain", "users.get_by_id", "--param", "id=1", "--no-analyze"]) == 0
    out = capsys.readouterr().out
    assert "Index Scan using users_pkey on users" in out
    assert "actual time=" not in out


def test_explain_analyze_of_a_write_is_rolled_back(db_env, capsys):
    params = ["email=dba@example.com", "username=dba_probe", f"hashed_password={HASH}", "full_name=", "bio="]
    argv = ["sql", "explain", "users.create"] + [a for p in params for a in ("--param", p)]
    assert main(argv) == 0
    assert "Insert on users" in capsys.readouterr().out
    assert _user_by_username(db_env, "dba_probe") is None


def _small_analyzed_users_table(url: str, count: int) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(url)
        try:
            create = REGISTRY["users.create"]
            for i in range(count):
                await conn.execute(create.text, f"tiny{i}@example.com", f"tiny_{i}", HASH, None, None)
            await conn.execute("ANALYZE users")  # what autovacuum does to a table soon after it is loaded
        finally:
            await conn.close()

    asyncio.run(run())


def test_explain_says_a_tiny_table_is_scanned_and_shows_the_plan_without_scans(db_env, capsys):
    _small_analyzed_users_table(db_env, 5)
    assert main(["sql", "explain", "users.get_by_id", "--param", "id=1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "-- expected plan: Index Scan using users_pkey on users" in lines
    assert "-- users: 5 rows (the planner's estimate)" in lines
    why = "-- the planner prefers a scan because the table is tiny (5 rows); with scans discouraged it uses:"
    assert why in lines, out
    before, after = lines[: lines.index(why)], lines[lines.index(why) + 1 :]
    assert any(line.startswith("Seq Scan on users") for line in before), out
    assert after[0].startswith("Index Scan using users_pkey on users"), out


def test_explain_of_the_expected_plan_adds_only_the_row_estimate(db_env, capsys):
    assert main(["sql", "explain", "users.get_by_id", "--param", "id=1", "--no-analyze"]) == 0
    out = capsys.readouterr().out
    assert "-- users: 0 rows (the planner's estimate)" in out
    assert "Index Scan using users_pkey on users" in out
    assert "prefers a scan" not in out


def test_explain_names_missing_and_unknown_parameters(db_env, capsys):
    assert main(["sql", "explain", "users.get_by_id", "--param", "ident=1"]) == 2
    err = capsys.readouterr().err
    assert "takes parameters: id (int8)" in err
    assert "missing id" in err
    assert "unknown ident" in err


def test_explain_rejects_a_value_of_the_wrong_type(db_env, capsys):
    assert main(["sql", "explain", "users.get_by_id", "--param", "id=one"]) == 2
    assert "not a valid int8" in capsys.readouterr().err


def test_explain_unknown_statement(db_env, capsys):
    assert main(["sql", "explain", "users.nope"]) == 1
    assert "no statement named 'users.nope'" in capsys.readouterr().err


def test_explain_without_database_url_uses_the_embedded_database(monkeypatch, tmp_path, capsys):
    # Its start-up is tested in tests/test_embedded.py; here the cluster is one no binaries can run.
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATASVC_DATA_DIR", str(tmp_path))
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("9\n")
    assert main(["sql", "explain", "users.get_by_id", "--param", "id=1"]) == 2
    assert f"{tmp_path / 'pgdata'} was made by PostgreSQL 9" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("raw", "type_name", "value"),
    [
        ("42", "int8", 42),
        ("true", "bool", True),
        ("off", "bool", False),
        ('{"a": 1}', "jsonb", '{"a": 1}'),
        ("1,2,3", "_int8", [1, 2, 3]),
        ("", "_text", []),
        ("plain", "text", "plain"),
    ],
    ids=["int", "bool-true", "bool-off", "jsonb", "int-array", "empty-array", "text"],
)
def test_parameters_are_converted_to_the_prepared_types(raw, type_name, value):
    assert convert(raw, type_name) == value


@pytest.mark.parametrize(
    ("raw", "type_name", "why"),
    [("x", "int4", "invalid literal"), ("maybe", "bool", "not a boolean"), ("{", "json", "unexpected")],
    ids=["int", "bool", "json"],
)
def test_unconvertible_parameters_fail(raw, type_name, why):
    with pytest.raises(ValueError, match=why):
        convert(raw, type_name)
