"""The listing's inputs, by property: search is a literal substring, sort keys come from a closed set,
numbers are bounded. (Moved from test_security.py; the example-based listing tests are in test_listing.py.)"""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.support.values import HASH

URL = "/api/v1/users"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("offset=99999999999999999999999", "query.offset", id="offset-past-bigint"),
        pytest.param("limit=1e3", "query.limit", id="limit-scientific"),
    ],
)
def test_numbers_past_any_integer_type_or_in_another_notation_are_422(client, query, field):
    """The small and negative cases are in test_listing.py's table of bad parameters."""
    response = client.get(f"{URL}?{query}")
    assert response.status_code == 422, response.text
    assert field in [e["field"] for e in response.json()["errors"]]


# Letters with and without case and accents (ß folds to ss), LIKE's own wildcards and escape, and the
# separators an email or a name holds.
SEARCH_ALPHABET = "aAbBxXyYzZ019 .-@'%_\\éÉäÄßẞ"
SEEDED = [
    ("ann_smith", "ann%smith@example.org", "Ann Smith"),
    ("annXsmith", "ann.smith@example.org", "ANN_SMITH"),
    ("back-slash", "back\\slash@example.org", "Back \\ Slash"),
    ("pct100", "100%@example.org", "100% Ann"),
    ("zz_top", "z@z.zz", None),
    ("Aeb", "äéß@example.org", "ÄÉẞ Äbé"),
    ("under___", "x_y@example.org", "x__y"),
    ("yyyy", "y@y.yy", "'quoted'"),
]


@pytest.fixture
def seeded(client):
    for username, email, full_name in SEEDED:
        body = {"email": email, "username": username, "hashed_password": HASH, "full_name": full_name}
        assert client.post("/api/v1/users", json=body).status_code == 201
    return client


def _caseless(text: str) -> str:
    # What the database's caseless() does (migration 0007): NFC, Unicode full case folding, NFC.
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())


def _oracle(term: str) -> set[str]:
    needle = _caseless(term)
    return {
        username
        for username, email, full_name in SEEDED
        if any(needle in _caseless(value or "") for value in (username, email, full_name))
    }


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(term=st.text(alphabet=SEARCH_ALPHABET, min_size=1, max_size=8))
def test_search_matches_exactly_the_python_oracle(seeded, term):
    for count in ("exact", "none"):  # two statements: trigram count for 3+ characters, plain for the rest
        response = seeded.get(URL, params={"search": term, "limit": 100, "count": count})
        assert response.status_code == 200, response.text
        found = {item["username"] for item in response.json()["items"]}
        assert found == _oracle(term), f"search={term!r} count={count}"


@pytest.mark.parametrize("term", ["%", "_", "\\", "ann%", "x__y", "100%", "\\ s"])
def test_like_wildcards_are_literal(seeded, term):
    found = {i["username"] for i in seeded.get(URL, params={"search": term}).json()["items"]}
    assert found == _oracle(term)
    assert found != {u for u, _, _ in SEEDED}  # a wildcard taken as one would match everybody


SORT_KEYS = {"created_at", "updated_at", "username", "email", "full_name", "id"}


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(sort_by=st.text(alphabet=st.characters(codec="utf-8"), max_size=40))
def test_any_other_sort_by_is_refused(client, sort_by):
    assume(sort_by not in SORT_KEYS)
    response = client.get(URL, params={"sort_by": sort_by})
    assert response.status_code == 422, f"sort_by={sort_by!r}: {response.status_code} {response.text}"
    assert response.json()["errors"][0]["field"] == "query.sort_by"
