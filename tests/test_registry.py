"""The registry: every file under ``sql/`` by namespace, each name once across the tree."""

from pathlib import Path

import pytest

from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT
from datasvc.sqlfiles import RegistryError, Route

ONE = "-- name: get_by_id :one\n-- Fetch one thing.\n-- params: id\nSELECT id FROM things WHERE id = $1\n"


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_loads_named_statements_with_namespace_from_folder(tmp_path):
    write(tmp_path, "things/basic.sql", ONE)
    write(tmp_path, "things/more/other.sql", ONE)
    assert list(Registry.load(tmp_path)) == ["things.get_by_id", "things.more.get_by_id"]


def test_shipped_routes_are_the_reviewed_reads():
    registry = Registry.load(PROJECT_ROOT / "sql")
    on_replica = {name.split("__")[0] for name, stmt in registry.items() if stmt.route is Route.REPLICA}
    assert on_replica == {
        "users.get_by_id",
        "users.get_by_username",
        "users.get_by_email",
        "users.batch_get_by_id",
        "users.batch_get_by_username",
        "users.batch_get_by_email",
        "users.list",
        "users.list_search",
        "users.export_json",
        "users.export_rows",
    }
    assert registry["auth.lookup"].route is Route.PRIMARY


def test_file_at_root_is_namespaced_by_its_stem(tmp_path):
    write(tmp_path, "things.sql", ONE)
    assert "things.get_by_id" in Registry.load(tmp_path)


def test_a_name_defined_twice_in_one_file_names_both_lines(tmp_path):
    write(tmp_path, "ns/x.sql", "-- name: a :one\n-- d\nSELECT 1\n-- name: a :one\n-- d\nSELECT 2\n")
    with pytest.raises(
        RegistryError, match=r"x\.sql:4: duplicate statement name 'ns\.a' \(first at .*x\.sql:1\)"
    ):
        Registry.load(tmp_path)


def test_duplicate_across_files_names_both_places(tmp_path):
    write(tmp_path, "ns/a.sql", "-- name: same :one\n-- d\nSELECT 1\n")
    write(tmp_path, "ns/b.sql", "-- name: same :one\n-- d\nSELECT 2\n")
    with pytest.raises(RegistryError, match=r"b\.sql:1: duplicate .* \(first at .*a\.sql:1\)"):
        Registry.load(tmp_path)


def test_missing_or_empty_folder_is_refused(tmp_path):
    with pytest.raises(RegistryError, match="SQL folder not found"):
        Registry.load(tmp_path / "nope")
    with pytest.raises(RegistryError, match="no statements found"):
        Registry.load(tmp_path)


def test_shipped_sql_loads():
    registry = Registry.load(PROJECT_ROOT / "sql")
    assert {"users.get_by_id", "users.create", "auth.lookup"} <= set(registry)
    for stmt in registry.values():
        assert stmt.description, stmt.name
