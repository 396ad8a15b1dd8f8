"""One address whatever its case and Unicode form, on a C-locale database too (issue 11.8, migration 0007).

Every test here runs against a database created with ``LC_COLLATE 'C' LC_CTYPE 'C'``, where PostgreSQL's
own ``lower('É')`` is ``'É'`` and ILIKE does not fold non-ASCII letters: the rules must hold without them.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql
from starlette.testclient import TestClient

from datasvc import migrations
from datasvc.app import create_app
from datasvc.settings import PROJECT_ROOT, Settings
from tests.support.pgserver import SERVER_URL, clone_of, new_name, url_for
from tests.support.values import HASH

MIGRATIONS = PROJECT_ROOT / "migrations"
CASELESS = "0007.email-caseless"

NFC_EMILE = "\u00e9mile@example.com"  # émile, é precomposed
NFD_EMILE = "e\u0301mile@example.com"  # émile, e + COMBINING ACUTE ACCENT
UPPER_EMILE = "\u00c9MILE@EXAMPLE.COM"  # ÉMILE
NFD_UPPER_EMILE = "E\u0301MILE@example.com"


def _create_c_locale_database(name: str) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(
            # libc named: from template0 of a cluster made with the builtin provider (the embedded
            # PostgreSQL 18), a database would keep that provider, whose lower() folds beyond ASCII.
            sql.SQL(
                "CREATE DATABASE {} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER 'libc' "
                "LC_COLLATE 'C' LC_CTYPE 'C'"
            ).format(sql.Identifier(name))
        )


def _drop_database(name: str) -> None:
    with psycopg.connect(SERVER_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def c_template() -> Iterator[str]:
    """A C-locale database with every migration applied, cloned by each test."""
    name = f"datasvc_ctmpl_{os.getpid()}"
    _create_c_locale_database(name)
    try:
        migrations.apply(url_for(name), MIGRATIONS)
        yield name
    finally:
        _drop_database(name)


@pytest.fixture
def c_url(c_template: str) -> Iterator[str]:
    with clone_of(c_template) as url:
        yield url


@pytest.fixture
def c_client(c_url: str, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(database_url=c_url, pool_min_size=1, pool_max_size=2, data_dir=tmp_path)
    with TestClient(create_app(settings)) as client:
        yield client


def _scalar(url: str, query: str, *args: object) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query, args).fetchone()
        return row[0] if row else None


def _create(client: TestClient, email: str, username: str, **extra: str):
    body = {"email": email, "username": username, "hashed_password": HASH, **extra}
    return client.post("/api/v1/users", json=body)


def _assert_email_conflict(response) -> None:
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["type"] == "urn:datasvc:problem:conflict"
    assert problem["field"] == "email"
    assert problem["detail"] == "email is already taken"


def test_the_database_really_folds_nothing_beyond_ascii(c_url):
    # What made the old rule fail: lower() and ILIKE follow lc_ctype, which is C here.
    assert _scalar(c_url, "SELECT datctype FROM pg_database WHERE datname = current_database()") == "C"
    assert _scalar(c_url, "SELECT lower(%s)", "\u00c9MILE") == "\u00c9mile"
    assert _scalar(c_url, "SELECT %s ILIKE %s", "\u00e9mile", "%\u00c9MILE%") is False


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (UPPER_EMILE, NFC_EMILE),
        (NFC_EMILE, "\u00c9mile@example.com"),
        (NFC_EMILE, NFD_EMILE),
        (NFD_UPPER_EMILE, NFC_EMILE),
        ("stra\u00dfe@example.com", "STRASSE@example.com"),  # full case folding: ß is ss
        ("\u03bf\u03b4\u03bf\u03c2@example.gr", "\u039f\u0394\u039f\u03a3@EXAMPLE.GR"),  # final sigma
    ],
    ids=["upper-accented", "capital-initial", "nfd-of-nfc", "nfd-upper", "sharp-s", "greek-final-sigma"],
)
def test_a_case_or_form_variant_of_a_taken_email_is_409_naming_email(c_client, first, second):
    assert _create(c_client, first, "first").status_code == 201
    _assert_email_conflict(_create(c_client, second, "second"))


def test_patching_to_a_variant_of_another_users_email_is_409(c_client):
    assert _create(c_client, UPPER_EMILE, "emile").status_code == 201
    other = _create(c_client, "zoe@example.com", "zoe").json()
    response = c_client.patch(f"/api/v1/users/{other['id']}", json={"email": NFD_EMILE})
    _assert_email_conflict(response)


def test_the_address_is_returned_as_entered_in_nfc(c_client, c_url):
    created = _create(c_client, NFD_UPPER_EMILE, "emile").json()
    assert created["email"] == "\u00c9MILE@example.com"  # composed, case kept
    stored = _scalar(c_url, "SELECT email FROM users WHERE id = %s", created["id"])
    assert stored == "\u00c9MILE@example.com"
    assert c_client.get(f"/api/v1/users/{created['id']}").json()["email"] == stored


LOOKUPS = [NFC_EMILE, NFD_EMILE, UPPER_EMILE, NFD_UPPER_EMILE, "\u00c9mile@Example.Com"]


def test_by_email_and_auth_lookup_find_every_case_and_form_variant(c_client):
    user = _create(c_client, NFC_EMILE, "emile").json()
    for lookup in LOOKUPS:
        response = c_client.get(f"/api/v1/users/by_email/{quote(lookup, safe='@')}")
        assert response.status_code == 200, (lookup, response.text)
        assert response.json() == user
        response = c_client.post("/api/v1/auth/lookup", json={"login": lookup})
        assert response.status_code == 200, (lookup, response.text)
        assert response.json()["id"] == user["id"]


# Terms of 3+ characters with count=exact run users.list_search__*, the others users.list__*.
TERMS = ["\u00c9MILE", "E\u0301MILE", "\u00e9mile@EXAMPLE", "ZO\u00cb", "ZOE\u0308 \u00c9", "\u00c9m"]


@pytest.mark.parametrize("count", ["exact", "none"])
def test_search_finds_accented_case_variants(c_client, count):
    emile = _create(c_client, NFD_EMILE, "emile", full_name="Zo\u00eb \u00c9mile").json()
    _create(c_client, "emma@example.com", "emma", full_name="Emma Mile")
    for term in TERMS:
        response = c_client.get("/api/v1/users", params={"search": term, "count": count})
        assert response.status_code == 200, (term, response.text)
        page = response.json()
        assert [u["id"] for u in page["items"]] == [emile["id"]], term
        if count == "exact":
            assert page["total"] == 1, term


def _fold(text: str) -> str:
    """The reference: NFC, Python's full case folding, NFC."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())


def _table_version() -> str | None:
    """The Unicode version migration 0007's table was made from (None before that migration existed)."""
    path = MIGRATIONS / f"{CASELESS}.sql"
    match = (
        re.search(r"Unicode (\d+\.\d+\.\d+): \d+ code points", path.read_text()) if path.exists() else None
    )
    return match.group(1) if match else None


@pytest.mark.skipif(
    _table_version() not in {None, unicodedata.unidata_version},
    reason="this Python's Unicode version is not the one the caseless() table was made from",
)
def test_caseless_folds_every_code_point_as_python_does(c_url):
    # Every character that folds, alone and between ASCII letters (the non-ASCII path folds ASCII too),
    # plus the ASCII path and strings NFC recomposes after folding.
    folding = [
        chr(cp)
        for cp in range(sys.maxunicode + 1)
        if not 0xD800 <= cp <= 0xDFFF and chr(cp).casefold() != chr(cp)
    ]
    texts = folding + [f"Ab{c}Cd" for c in folding]
    texts += [
        "",
        "ADA@Example.COM",
        "J\u030c",
        "\u01f0",
        "I\u0307",
        "\u1e9e",
        "e\u0301\u0327",
        "\u00c5\u212b",
    ]
    with psycopg.connect(c_url, autocommit=True) as conn:
        rows = conn.execute("SELECT t, caseless(t) FROM unnest(%s::text[]) AS t", (texts,)).fetchall()
    wrong = [(t, got, _fold(t)) for t, got in rows if got != _fold(t)]
    assert not wrong, wrong[:10]


# --- the migration ----------------------------------------------------------------------------------


@pytest.fixture
def c_before_caseless(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A C-locale database migrated up to, not including, 0007; and the folder of those migrations."""
    before = tmp_path / "before"
    before.mkdir()
    for path in MIGRATIONS.glob("*.sql"):
        if path.name < CASELESS:
            shutil.copy(path, before)
    name = new_name("datasvc_cmig")
    _create_c_locale_database(name)
    try:
        migrations.apply(url_for(name), before)
        yield url_for(name), before
    finally:
        _drop_database(name)


def _insert(url: str, *emails: str) -> list[int]:
    ids = []
    for n, email in enumerate(emails):
        query = "INSERT INTO users (email, username, hashed_password) VALUES (%s, %s, %s) RETURNING id"
        row_id = _scalar(url, query, email, f"user{n}", HASH)
        assert isinstance(row_id, int)
        ids.append(row_id)
    return ids


def test_the_migration_stops_naming_the_ids_of_colliding_rows_and_loses_none(c_before_caseless):
    url, _ = c_before_caseless
    # Distinct under the old rule (lower() under ctype C and NFD vs NFC): three rows for one address.
    # Two more that collide under the new rule only because ß folds to ss.
    emile, ada, nfd, nfc, sharp, double = _insert(
        url,
        UPPER_EMILE,
        "ada@example.com",
        NFD_EMILE,
        NFC_EMILE,
        "gro\u00df@example.com",
        "GROSS@example.com",
    )
    with pytest.raises(psycopg.errors.UniqueViolation) as failed:
        migrations.apply(url, MIGRATIONS)
    groups = re.findall(r"ids ([\d, ]+\d)", str(failed.value))
    assert sorted(groups) == sorted([f"{emile}, {nfd}, {nfc}", f"{sharp}, {double}"]), str(failed.value)
    assert str(ada) not in " ".join(groups)
    assert _scalar(url, "SELECT count(*) FROM users") == 6
    assert CASELESS not in migrations.status(url, MIGRATIONS).applied


def test_the_migration_normalizes_stored_addresses_once_the_collisions_are_resolved(c_before_caseless):
    url, _ = c_before_caseless
    upper, nfd, plain = _insert(url, UPPER_EMILE, NFD_EMILE, "ada@example.com")
    with pytest.raises(psycopg.errors.UniqueViolation, match=f"ids {upper}, {nfd}"):
        migrations.apply(url, MIGRATIONS)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE users SET email = %s WHERE id = %s", ("e\u0301mile2@example.com", nfd))
    migrations.apply(url, MIGRATIONS)
    assert _scalar(url, "SELECT email FROM users WHERE id = %s", nfd) == "\u00e9mile2@example.com"
    assert _scalar(url, "SELECT version FROM users WHERE id = %s", plain) == 1  # untouched
    with psycopg.connect(url, autocommit=True) as conn, pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(
            "INSERT INTO users (email, username, hashed_password) VALUES (%s, 'again', %s)", (NFC_EMILE, HASH)
        )
