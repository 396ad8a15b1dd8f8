import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import psycopg
import pytest
from starlette.testclient import TestClient

from datasvc.users.listing import like_pattern
from tests.support.seed import seed_users
from tests.support.values import HASH

URL = "/api/v1/users"
SORTS = ["created_at", "updated_at", "username", "email", "full_name", "id"]


def _sql_ids(database_url: str, where: str = "true", order: str = "id") -> list[int]:
    with psycopg.connect(database_url) as conn:
        return [r[0] for r in conn.execute(f"SELECT id FROM users WHERE {where} ORDER BY {order}")]


def _get(client: TestClient, **params: Any) -> Any:
    return client.get(f"{URL}?{urlencode(params)}")


def _ok(client: TestClient, **params: Any) -> Any:
    response = _get(client, **params)
    assert response.status_code == 200, response.text
    return response.json()


def _fields(response: Any) -> list[str]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    return [e["field"] for e in response.json()["errors"]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("limit=0", "query.limit", id="limit-zero"),
        pytest.param("limit=101", "query.limit", id="limit-too-big"),
        pytest.param("limit=ten", "query.limit", id="limit-not-int"),
        pytest.param("offset=-1", "query.offset", id="offset-negative"),
        pytest.param("offset=100001", "query.offset", id="offset-over-cap"),
        pytest.param("sort_by=hashed_password", "query.sort_by", id="sort-hashed-password"),
        pytest.param("sort_by=id%3Bdrop%20table%20users", "query.sort_by", id="sort-injection"),
        pytest.param("sort_by=lower(email)", "query.sort_by", id="sort-expression"),
        pytest.param("sort_order=up", "query.sort_order", id="sort-order"),
        pytest.param("status=banned", "query.status", id="status"),
        pytest.param("is_verified=maybe", "query.is_verified", id="is-verified"),
        pytest.param("is_admin=2", "query.is_admin", id="is-admin"),
        pytest.param("search=", "query.search", id="search-empty"),
        pytest.param("search=" + "x" * 101, "query.search", id="search-too-long"),
        pytest.param("search=a%00b", "query.search", id="search-nul"),
        pytest.param("search=a%1Fb", "query.search", id="search-control-character"),
        pytest.param("count=all", "query.count", id="count"),
        pytest.param("cursor=", "query.cursor", id="cursor-empty"),
        pytest.param("cursor=garbage", "query.cursor", id="cursor-garbled"),
        pytest.param("cursor=1.e30.AAAAAAAAAAAAAAAAAAAAAA", "query.cursor", id="cursor-forged"),
        pytest.param("sortby=id", "query.sortby", id="unknown-parameter"),
        pytest.param("limit=1&limit=2", "query.limit", id="repeated-parameter"),
    ],
)
def test_a_bad_parameter_is_422_naming_it(client, query, field):
    assert field in _fields(client.get(f"{URL}?{query}"))


def test_cursor_with_offset_is_422(client, database_url):
    seed_users(database_url, 3)
    first = _ok(client, limit=1)
    assert "query.offset" in _fields(_get(client, cursor=first["next_cursor"], offset=0))


def test_a_tampered_cursor_is_422_not_500(client, database_url):
    seed_users(database_url, 3)
    token = _ok(client, limit=1)["next_cursor"]
    version, payload, mac = token.split(".")
    other = "B" if mac[0] == "A" else "A"
    for bad in (f"{version}.{payload[:-1]}.{mac}", f"{version}.{payload}.{other}{mac[1:]}", token + "."):
        assert _fields(_get(client, limit=1, cursor=bad)) == ["query.cursor"]


@pytest.mark.parametrize(
    "changed",
    [
        pytest.param({"sort_by": "username"}, id="sort_by"),
        pytest.param({"sort_order": "asc"}, id="sort_order"),
        pytest.param({"status": "active"}, id="status"),
        pytest.param({"is_verified": "true"}, id="is_verified"),
        pytest.param({"is_admin": "false"}, id="is_admin"),
        pytest.param({"search": "user"}, id="search"),
    ],
)
def test_a_cursor_replayed_with_another_sort_or_filter_is_422(client, database_url, changed):
    seed_users(database_url, 5)
    token = _ok(client, limit=2)["next_cursor"]
    response = _get(client, limit=2, cursor=token, **changed)
    assert _fields(response) == ["query.cursor"]
    assert "different sort_by" in response.json()["detail"]


@pytest.mark.pooler
def test_the_offset_envelope(client, database_url):
    seed_users(database_url, 5)
    first = _ok(client, limit=2, sort_by="id", sort_order="asc")
    assert {k: v for k, v in first.items() if k not in ("items", "next_cursor")} == {
        "total": 5,
        "total_kind": "exact",
        "limit": 2,
        "offset": 0,
        "has_next": True,
        "has_prev": False,
        "prev_cursor": None,
    }
    assert [u["id"] for u in first["items"]] == _sql_ids(database_url)[:2]
    assert set(first["items"][0]) == {
        "id", "email", "username", "full_name", "bio", "status",
        "is_verified", "is_admin", "created_at", "updated_at",
    }  # fmt: skip
    last = _ok(client, limit=2, offset=4, sort_by="id", sort_order="asc")
    assert (last["total"], last["has_next"], last["has_prev"], last["next_cursor"]) == (5, False, True, None)
    assert [u["id"] for u in last["items"]] == _sql_ids(database_url)[4:]
    assert last["prev_cursor"] is not None


def test_the_trailing_slash_form_lists_too(client, database_url):
    seed_users(database_url, 2)
    assert client.get(URL + "/").json()["total"] == 2


def test_an_offset_past_the_end_still_reports_the_total(client, database_url):
    seed_users(database_url, 5)
    page = _ok(client, offset=50)
    assert (page["items"], page["total"], page["has_next"], page["has_prev"]) == ([], 5, False, True)


def test_an_empty_table_is_an_empty_first_page(client):
    page = _ok(client)
    assert (page["items"], page["total"], page["has_next"], page["has_prev"]) == ([], 0, False, False)


def test_count_none_and_keyset_pages_leave_the_total_out(client, database_url):
    seed_users(database_url, 5)
    assert {"total", "total_kind"}.isdisjoint(_ok(client, count="none"))
    first = _ok(client, limit=2)
    assert {"total", "total_kind"}.isdisjoint(_ok(client, limit=2, cursor=first["next_cursor"]))
    asked = _ok(client, limit=2, cursor=first["next_cursor"], count="exact")
    assert (asked["total"], asked["total_kind"]) == (5, "exact")


@pytest.mark.parametrize(
    "filters",
    [
        pytest.param({}, id="none"),
        pytest.param({"status": "suspended"}, id="status"),
        pytest.param({"status": "active", "is_verified": "true", "is_admin": "false"}, id="all-three"),
        pytest.param({"is_admin": "true"}, id="is_admin"),
    ],
)
def test_count_estimated_without_search_is_exact_even_unanalyzed(client, database_url, filters):
    """The filters' totals come from the counts table (migration 0009), so no statistics are needed."""
    seed_users(database_url, 300)
    where = " AND ".join(f"{k} = '{v}'" for k, v in filters.items()) or "true"
    page = _ok(client, count="estimated", **filters)
    assert (page["total"], page["total_kind"]) == (len(_sql_ids(database_url, where)), "exact")


@pytest.mark.parametrize("analyzed", [False, True], ids=["never-analyzed", "analyzed"])
def test_count_estimated_with_search_counts_small_sets_and_estimates_large_ones(
    client, database_url, analyzed
):
    seed_users(database_url, 1500)
    if analyzed:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("ANALYZE users")
    small = _ok(client, count="estimated", search="user_00")  # user_0001 .. user_0099
    assert (small["total"], small["total_kind"]) == (99, "exact")
    large = _ok(client, count="estimated", search="user")  # every row: past the 1,000 counted
    assert large["total_kind"] == "estimated"
    assert isinstance(large["total"], int)
    assert large["total"] > 1000


def test_the_document_says_total_is_left_out_rather_than_null(client):
    schema = client.get("/openapi.json").json()["components"]["schemas"]["UserPage"]
    for key in ("total", "total_kind"):
        assert key not in schema["required"]
        assert "null" not in str(schema["properties"][key]), schema["properties"][key]
        assert "default" not in schema["properties"][key]
    assert schema["properties"]["total_kind"]["enum"] == ["exact", "estimated"]


@pytest.mark.parametrize(
    ("params", "where"),
    [
        pytest.param({"status": "suspended"}, "status = 'suspended'", id="status"),
        pytest.param({"is_verified": "true"}, "is_verified", id="is_verified"),
        pytest.param({"is_admin": "true", "status": "active"}, "is_admin AND status = 'active'", id="two"),
        pytest.param({"search": "NAME 2"}, "full_name ILIKE '%name 2%'", id="search-ignores-case"),
        pytest.param({"search": "user_001"}, "username LIKE 'user\\_001%'", id="search-username"),
        pytest.param({"search": "u12@"}, "email LIKE 'u12@%'", id="search-email"),
    ],
)
@pytest.mark.pooler(where="is_admin AND status = 'active'")
def test_filters_select_the_rows_sql_selects(client, database_url, params, where):
    seed_users(database_url, 60)
    page = _ok(client, limit=100, sort_by="id", sort_order="asc", **params)
    expected = _sql_ids(database_url, where)
    assert [u["id"] for u in page["items"]] == expected
    assert page["total"] == len(expected)


def test_search_wildcards_match_literally(client, database_url):
    names = ["100% sure", "1000 sure", "a_b", "axb", "back\\slash", "backslash"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        for i, name in enumerate(names):
            conn.execute(
                "INSERT INTO users (email, username, hashed_password, full_name) VALUES (%s, %s, %s, %s)",
                (f"w{i}@example.com", f"wild-{i}", HASH, name),
            )

    def found(term: str) -> list[str]:
        return [u["full_name"] for u in _ok(client, search=term, sort_by="id", sort_order="asc")["items"]]

    assert found("%") == ["100% sure"]
    assert found("0% s") == ["100% sure"]
    assert found("a_b") == ["a_b"]
    assert found("_") == ["a_b"]
    assert found("\\") == ["back\\slash"]
    assert found("SLASH") == ["back\\slash", "backslash"]


def test_search_never_matches_across_two_fields(client, database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO users (email, username, hashed_password, full_name) VALUES (%s, %s, %s, %s)",
            ("def@x.io", "abc", HASH, "ghi"),
        )
    assert _ok(client, search="abc")["total"] == 1
    assert _ok(client, search="cdef")["total"] == 0
    assert _ok(client, search="iog")["total"] == 0
    assert _ok(client, search="c d")["total"] == 0


def test_like_pattern_escapes_the_wildcards():
    assert like_pattern("a%b_c\\d") == "%a\\%b\\_c\\\\d%"


@pytest.mark.parametrize("sort_by", SORTS)
def test_offset_pages_follow_the_sql_order_with_id_as_tiebreaker(client, database_url, sort_by):
    seed_users(database_url, 40)
    key = "ARRAY[full_name]" if sort_by == "full_name" else sort_by
    for sort_order in ("asc", "desc"):
        expected = _sql_ids(database_url, order=f"{key} {sort_order}, id {sort_order}")
        got = []
        for offset in range(0, 40, 15):
            page = _ok(client, limit=15, offset=offset, sort_by=sort_by, sort_order=sort_order)
            got += [u["id"] for u in page["items"]]
        assert got == expected, sort_order


def test_null_full_names_sort_last_ascending_and_first_descending(client, database_url):
    seed_users(database_url, 12)
    up = [u["full_name"] for u in _ok(client, sort_by="full_name", sort_order="asc")["items"]]
    down = [u["full_name"] for u in _ok(client, sort_by="full_name", sort_order="desc")["items"]]
    assert up[-4:] == [None] * 4
    assert None not in up[:-4]
    assert down[:4] == [None] * 4
    assert None not in down[4:]


def _walk(
    client: TestClient,
    params: dict[str, Any],
    *,
    start: str | None = None,
    key: str = "next_cursor",
    between: Callable[[], None] = lambda: None,
) -> tuple[list[int], list[Any]]:
    """Follow one kind of cursor until it runs out; return every page's ids, and the last page."""
    ids: list[int] = []
    page = _ok(client, **params) if start is None else _ok(client, cursor=start, **params)
    pages = [page]
    while True:
        ids += [u["id"] for u in page["items"]]
        if page[key] is None:
            return ids, pages
        between()
        page = _ok(client, cursor=page[key], **params)
        pages.append(page)
        assert len(pages) < 200


@pytest.mark.parametrize("sort_by", SORTS)
@pytest.mark.pooler(sort_by="full_name")
def test_a_walk_forwards_then_backwards_sees_every_row_once(client, database_url, sort_by):
    seed_users(database_url, 45)
    for sort_order in ("asc", "desc"):
        _walk_both_ways(client, database_url, {"limit": 7, "sort_by": sort_by, "sort_order": sort_order})


def _walk_both_ways(
    client: TestClient, database_url: str, params: dict[str, Any], where: str = "true"
) -> None:
    sort_by, sort_order = params["sort_by"], params["sort_order"]
    forwards, pages = _walk(client, params)
    key = "ARRAY[full_name]" if sort_by == "full_name" else sort_by
    assert forwards == _sql_ids(database_url, where, order=f"{key} {sort_order}, id {sort_order}")
    assert (pages[0]["prev_cursor"], pages[-1]["next_cursor"]) == (None, None)
    assert all(p["has_next"] for p in pages[:-1])
    assert all(p["has_prev"] for p in pages[1:])
    last = pages[-1]
    backwards, back_pages = _walk(client, params, start=last["prev_cursor"], key="prev_cursor")
    back_in_order = [u["id"] for p in reversed(back_pages) for u in p["items"]] + [
        u["id"] for u in last["items"]
    ]
    assert sorted(backwards) == sorted(set(backwards))
    assert back_in_order == forwards
    assert back_pages[-1]["has_prev"] is False


@pytest.mark.parametrize("sort_by", ["full_name", "created_at"])
def test_a_search_walk_with_exact_totals_sees_every_row_once(client, database_url, sort_by):
    """count=exact with a search runs users.list_search__*: one index scan for the total and the page."""
    seed_users(database_url, 60)
    where = "username LIKE 'user\\_00%' AND status <> 'inactive'"
    for sort_order in ("asc", "desc"):
        params = {"limit": 4, "sort_by": sort_by, "sort_order": sort_order, "count": "exact"}
        params |= {"search": "USER_00", "status": "active"}
        _walk_both_ways(client, database_url, params, "username LIKE 'user\\_00%' AND status = 'active'")
        first = _ok(client, **params)
        assert first["total"] == len(_sql_ids(database_url, where.replace("<> 'inactive'", "= 'active'")))
        same = _ok(client, **{**params, "count": "none"})
        assert [u["id"] for u in same["items"]] == [u["id"] for u in first["items"]]


def test_a_walk_with_a_filter_stays_in_the_filter(client, database_url):
    seed_users(database_url, 60)
    ids, _ = _walk(client, {"limit": 4, "status": "active", "sort_by": "full_name", "sort_order": "asc"})
    expected = _sql_ids(database_url, "status = 'active'", "ARRAY[full_name], id")
    assert ids == expected


class _Writer(threading.Thread):
    """Inserts users on its own connection until stopped: a real concurrent writer."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.database_url = database_url
        self.stop = threading.Event()
        self.inserted = 0
        self.error: BaseException | None = None
        self.progress = threading.Condition()

    def one_more(self) -> None:
        """Block until the writer has committed another row: every page then races a fresh insert."""
        with self.progress:
            target = self.inserted + 1
            assert self.progress.wait_for(lambda: self.inserted >= target or self.error is not None, 10)

    def run(self) -> None:
        try:
            with psycopg.connect(self.database_url, autocommit=True) as conn:
                while not self.stop.is_set():
                    n = self.inserted
                    # Spread across the username order: some land before the walk, some after it.
                    conn.execute(
                        "INSERT INTO users (email, username, hashed_password, full_name)"
                        " VALUES (%s, %s, %s, %s)",
                        (
                            f"new{n}@example.com",
                            f"user_{n % 50:04d}_new{n}",
                            HASH,
                            None if n % 2 else "Name 1",
                        ),
                    )
                    with self.progress:
                        self.inserted += 1
                        self.progress.notify_all()
                    time.sleep(0.002)
        except BaseException as exc:  # handed to the test thread
            self.error = exc


@pytest.mark.parametrize("sort_by", ["username", "full_name"])
@pytest.mark.pooler(sort_by="username")
def test_a_walk_survives_a_concurrent_writer(client, database_url, sort_by):
    seed_users(database_url, 50)
    original = set(_sql_ids(database_url))
    writer = _Writer(database_url)
    writer.start()
    try:
        params = {"limit": 3, "sort_by": sort_by, "sort_order": "asc"}
        forwards, pages = _walk(client, params, between=writer.one_more)
        start = pages[-1]["prev_cursor"]
        backwards, _ = _walk(client, params, start=start, key="prev_cursor", between=writer.one_more)
    finally:
        writer.stop.set()
        writer.join(timeout=10)
    assert writer.error is None
    assert writer.inserted >= len(original) // 3, "the writer did not overlap the walk"
    backwards += [u["id"] for u in pages[-1]["items"]]
    for seen in (forwards, backwards):
        assert len(seen) == len(set(seen)), "a row was seen twice"
        assert original <= set(seen), "an existing row was skipped"


def test_a_cursor_whose_rows_all_went_away_turns_back(client, database_url):
    seed_users(database_url, 6)
    params = {"limit": 2, "sort_by": "id", "sort_order": "asc"}
    first = _ok(client, **params)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM users WHERE id > %s", (first["items"][-1]["id"],))
    empty = _ok(client, cursor=first["next_cursor"], **params)
    assert (empty["items"], empty["has_next"], empty["next_cursor"], empty["has_prev"]) == (
        [],
        False,
        None,
        True,
    )
    back = _ok(client, cursor=empty["prev_cursor"], **params)
    assert [u["id"] for u in back["items"]] == [first["items"][0]["id"]]
