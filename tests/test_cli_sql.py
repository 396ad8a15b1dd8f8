"""`datasvc sql list | show | check` — what a DBA runs to review the registry."""

import pytest

from datasvc.cli import main
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT


def test_list_prints_one_short_line_per_statement_service_first(capsys):
    assert main(["sql", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    registry = Registry.load(PROJECT_ROOT / "sql")
    internal_at = next(i for i, line in enumerate(lines) if line.startswith("# internal:"))
    assert lines[0].startswith("# service statements")
    for stmt in registry.values():
        (i, line) = next((i, line) for i, line in enumerate(lines) if line.startswith(stmt.name + " "))
        assert line.split() == [
            stmt.name,
            f":{stmt.kind.value}",
            stmt.route.value,
            *(", ".join(stmt.params) or "-").split(),
        ]
        is_internal = stmt.name.split(".")[0] in ("migrate", "session", "replica", "explain")
        assert (i > internal_at) == is_internal, line
    assert len(lines) == len(registry) + 2


def test_list_verbose_adds_file_and_line(capsys):
    assert main(["sql", "list", "--verbose"]) == 0
    out = capsys.readouterr().out
    for stmt in Registry.load(PROJECT_ROOT / "sql").values():
        line = next(line for line in out.splitlines() if line.startswith(stmt.name + " "))
        assert f"{stmt.file.name}:{stmt.line}" in line


def test_show_prints_the_statement_as_sent(capsys):
    assert main(["sql", "show", "users.get_by_id"]) == 0
    out = capsys.readouterr().out
    assert "-- params: $1 id" in out
    assert "/* users.get_by_id */ SELECT" in out


def test_show_unknown_name_fails(capsys):
    assert main(["sql", "show", "users.nope"]) == 1
    assert "no statement named 'users.nope'" in capsys.readouterr().err


def test_check_passes_on_the_migrated_schema(monkeypatch, database_url, capsys):
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert main(["sql", "check"]) == 0
    registry = Registry.load(PROJECT_ROOT / "sql")
    assert f"{len(registry)} of {len(registry)} statements prepare" in capsys.readouterr().out


def test_check_fails_on_an_unmigrated_database(monkeypatch, empty_database_url, capsys):
    monkeypatch.setenv("DATABASE_URL", empty_database_url)
    assert main(["sql", "check"]) == 1
    out = capsys.readouterr().out
    assert "FAIL users.get_by_id" in out
    assert "42P01" in out


def test_check_without_database_url_uses_the_embedded_database(monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATASVC_DATA_DIR", str(tmp_path))
    (tmp_path / "pgdata").mkdir()
    (tmp_path / "pgdata" / "PG_VERSION").write_text("9\n")
    assert main(["sql", "check"]) == 2
    assert "was made by PostgreSQL 9 and no PostgreSQL 9 server binaries are here" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["-- name: broken :weird\n-- d\nSELECT 1\n"])
def test_a_bad_statement_file_stops_every_command_with_file_and_line(monkeypatch, tmp_path, capsys, bad):
    (tmp_path / "x.sql").write_text(bad)
    monkeypatch.setenv("DATASVC_SQL_DIR", str(tmp_path))
    assert main(["sql", "list"]) == 2
    assert f"{tmp_path / 'x.sql'}:1: unknown result kind :weird" in capsys.readouterr().err
