"""Large answers are gzipped for callers that accept gzip; small ones and ETag'd ones never are."""

from __future__ import annotations

import gzip

import orjson
import pytest

from datasvc.compression import MINIMUM_SIZE, accepts_gzip
from tests.support.seed import seed_users

PAGE = "/api/v1/users?limit=100"


@pytest.fixture
def seeded(client, database_url):
    seed_users(database_url, 100)
    return client


def test_a_100_row_page_is_gzipped_and_decodes_to_the_same_json(seeded):
    plain = seeded.get(PAGE, headers={"accept-encoding": "identity"})
    zipped = seeded.get(PAGE, headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in plain.headers
    assert zipped.headers["content-encoding"] == "gzip"
    assert plain.headers["vary"] == zipped.headers["vary"] == "Accept-Encoding"
    assert orjson.loads(zipped.content) == orjson.loads(plain.content)  # httpx2 decoded it
    plain_size, zipped_size = int(plain.headers["content-length"]), int(zipped.headers["content-length"])
    assert plain_size == len(plain.content) > 20_000
    assert zipped_size < plain_size / 4, (plain_size, zipped_size)


def test_the_compressed_bytes_are_plain_gzip(seeded):
    with seeded.stream("GET", PAGE, headers={"accept-encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert orjson.loads(gzip.decompress(raw))["limit"] == 100


@pytest.mark.parametrize("accept", ["gzip;q=0", "deflate", "br", ""])
def test_no_gzip_unless_accepted(seeded, accept):
    response = seeded.get(PAGE, headers={"accept-encoding": accept})
    assert "content-encoding" not in response.headers
    assert response.headers["vary"] == "Accept-Encoding"


@pytest.mark.parametrize("accept", ["gzip", "identity"])
def test_head_announces_what_get_would_send(seeded, accept):
    get = seeded.get(PAGE, headers={"accept-encoding": accept})
    head = seeded.head(PAGE, headers={"accept-encoding": accept})
    assert head.status_code == 200
    for name in ("content-length", "content-encoding", "vary"):
        assert head.headers.get(name) == get.headers.get(name), name


def test_small_answers_stay_as_they_are(seeded):
    response = seeded.get("/api/v1/users?limit=1", headers={"accept-encoding": "gzip"})
    assert int(response.headers["content-length"]) < MINIMUM_SIZE
    assert "content-encoding" not in response.headers
    assert "vary" not in response.headers


def test_an_answer_with_an_etag_is_never_compressed(client):
    user = {"email": "a@b.io", "username": "alice", "hashed_password": "$2b$12$" + "a" * 53}
    created = client.post("/api/v1/users", json={**user, "bio": "b" * 1000, "full_name": "f" * 100})
    response = client.get(created.headers["location"], headers={"accept-encoding": "gzip"})
    assert int(response.headers["content-length"]) > MINIMUM_SIZE
    assert "content-encoding" not in response.headers
    patched = client.patch(
        created.headers["location"], json={"bio": "c" * 1000}, headers={"if-match": response.headers["etag"]}
    )
    assert patched.status_code == 200  # the tag the caller holds matches the bytes it got


@pytest.mark.parametrize(
    ("value", "accepted"),
    [
        (b"gzip", True),
        (b"GZIP, deflate", True),
        (b"deflate, gzip;q=0.5", True),
        (b"gzip;q=0", False),
        (b"gzip; q=0.0", False),
        (b"*", True),
        (b"identity", False),
        (b"br;q=1, x-gzip", True),
    ],
)
def test_accept_encoding_is_parsed(value, accepted):
    assert accepts_gzip([(b"accept-encoding", value)]) is accepted
