"""``-- expand:`` headers: one template, one statement per combination of a closed set of values."""

from pathlib import Path

import pytest

from datasvc.cli import main
from datasvc.registry import Registry
from datasvc.sqlfiles import RegistryError

TEMPLATE = """\
-- name: page :many
-- Things ordered by {{sort}} {{dir}}.
-- expand: sort, type in (made_at, timestamptz),
--   (name, text)
-- expand: dir, op in (asc, >), (desc, <)
-- params: key, id
-- expect-plan: Index Scan using things_{{sort}}_idx
SELECT id FROM things WHERE ({{sort}}, id) {{op}} ($1::{{type}}, $2) ORDER BY {{sort}} {{dir}}, id {{dir}}
"""


def _load(tmp_path: Path, text: str) -> Registry:
    folder = tmp_path / "things"
    folder.mkdir(exist_ok=True)
    (folder / "page.sql").write_text(text)
    return Registry.load(tmp_path)


def test_one_statement_per_combination_named_by_first_values(tmp_path):
    registry = _load(tmp_path, TEMPLATE)
    assert list(registry) == [
        "things.page__made_at_asc",
        "things.page__made_at_desc",
        "things.page__name_asc",
        "things.page__name_desc",
    ]
    stmt = registry["things.page__name_desc"]
    assert stmt.sql == "SELECT id FROM things WHERE (name, id) < ($1::text, $2) ORDER BY name desc, id desc"
    assert stmt.description == "Things ordered by name desc."
    assert stmt.plan == "Index Scan using things_name_idx"
    assert (stmt.params, stmt.line) == (("key", "id"), 1)


def test_a_statement_without_expand_keeps_its_name(tmp_path):
    registry = _load(tmp_path, "-- name: one :value\n-- One.\nSELECT 1\n")
    assert list(registry) == ["things.one"]


@pytest.mark.parametrize(
    ("header", "message"),
    [
        pytest.param("-- expand: sort in a, b\n", "undefined marker", id="undefined-marker"),
        pytest.param("-- expand: sort, type in (a, text), (b)\n", "does not fit names", id="short-tuple"),
        pytest.param("-- expand: sort, type in a, b\n", "parenthesised tuples", id="bare-values-for-two"),
        pytest.param("-- expand: sort in a, a\n", "distinct", id="duplicate-value"),
        pytest.param("-- expand: sort, sort in (a, a)\n", "names must be distinct", id="duplicate-name"),
        pytest.param("-- expand: sort in a; drop table x\n", "does not fit", id="semicolon"),
        pytest.param("-- expand: sort in 'a'\n", "does not fit", id="quote"),
        pytest.param("-- expand: sort\n", "expand must read", id="no-values"),
        pytest.param("-- expand: sort in A-B\n", "must match", id="bad-name-suffix"),
    ],
)
def test_a_bad_expand_refuses_the_load_with_file_and_line(tmp_path, header, message):
    text = f"-- name: page :many\n-- Things.\n{header}SELECT {{{{sort}}}}, {{{{type}}}} FROM things\n"
    with pytest.raises(RegistryError, match=message) as caught:
        _load(tmp_path, text)
    assert "page.sql:" in str(caught.value)


def test_each_expanded_statement_is_checked_like_a_written_one(tmp_path):
    text = "-- name: page :many\n-- Things.\n-- expand: n in one, two\n-- params: a\nSELECT $1, $2 -- {{n}}\n"
    with pytest.raises(RegistryError, match=r"page__one.*declares params"):
        _load(tmp_path, text)


def test_sql_list_and_show_print_every_expanded_statement(tmp_path, monkeypatch, capsys):
    _load(tmp_path, TEMPLATE)
    monkeypatch.setenv("DATASVC_SQL_DIR", str(tmp_path))
    assert main(["sql", "list"]) == 0
    out = capsys.readouterr().out.splitlines()
    listed = [line.split()[0] for line in out if line.strip() and not line.startswith("#")]
    assert listed == [
        "things.page__made_at_asc",
        "things.page__made_at_desc",
        "things.page__name_asc",
        "things.page__name_desc",
    ]
    assert main(["sql", "show", "things.page__made_at_asc"]) == 0
    assert "(made_at, id) > ($1::timestamptz, $2)" in capsys.readouterr().out


def test_the_shipped_listing_expands_to_every_sort_and_direction():
    registry = Registry.load(Path(__file__).resolve().parent.parent / "sql")
    names = sorted(n for n in registry if n.startswith("users.list__"))
    sorts = ["created_at", "email", "full_name", "id", "updated_at", "username"]
    assert names == [f"users.list__{s}_{d}" for s in sorts for d in ("asc", "desc")]
