"""sql/schema.sql is the schema every migration leaves, as `datasvc sql schema` prints it.

The comparison runs on a fresh clone of the migrated template database, so a migration that changes the
schema fails here until `scripts/schema` has regenerated the file.
"""

from __future__ import annotations

import pytest

from datasvc.registry import SCHEMA_FILE
from datasvc.schema import dump, normalize, recorded_major, server_major
from datasvc.settings import PROJECT_ROOT

SCHEMA = PROJECT_ROOT / "sql" / SCHEMA_FILE


def test_schema_sql_is_what_the_migrations_make(database_url: str) -> None:
    written = SCHEMA.read_text()
    major = server_major(database_url)
    if recorded_major(written) != major:
        pytest.skip(
            f"{SCHEMA.name} was dumped by PostgreSQL {recorded_major(written)}, this server is {major}"
        )
    assert dump(database_url) == written, f"the migrations changed the schema: run scripts/schema ({SCHEMA})"


def test_the_dump_leaves_out_what_varies_between_runs() -> None:
    dumped = (
        "--\n-- PostgreSQL database dump\n--\n\n\\restrict AbC123\n\n"
        "-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)\n"
        "-- Dumped by pg_dump version 15.20\n\n"
        "SET statement_timeout = 0;\nSELECT pg_catalog.set_config('search_path', '', false);\n\n\n\n"
        "CREATE TABLE public.t (\n    id bigint\n);   \n\n\\unrestrict AbC123\n"
    )
    text = normalize(dumped, 15)
    assert recorded_major(text) == 15
    body = text.split("\n\n", 1)[1]
    assert body == "--\n-- PostgreSQL database dump\n--\n\nCREATE TABLE public.t (\n    id bigint\n);\n"


def test_the_bookkeeping_tables_are_not_in_the_schema() -> None:
    text = SCHEMA.read_text()
    assert "CREATE TABLE public.users (" in text
    for table in ("_yoyo_migration", "yoyo_lock", "datasvc_migration_file"):
        assert table not in text


def test_no_statement_writes_out_the_search_text() -> None:
    """The searched text has one definition, users_search_text() (migration 0012): statements call it."""
    written_out = [
        f"{path.relative_to(PROJECT_ROOT)}:{number}"
        for path in sorted((PROJECT_ROOT / "sql").rglob("*.sql"))
        if path != SCHEMA
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if "chr(31)" in line and not line.lstrip().startswith("--")
    ]
    assert not written_out, f"call users_search_text(username, email, full_name) instead: {written_out}"
