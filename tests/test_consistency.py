"""The consistency token's encoding and the lag arithmetic of `datasvc.replicas`, without a server."""

import pytest

from datasvc.consistency import HEADER, decode, encode
from datasvc.context import UNREACHABLE
from datasvc.replicas import LsnHistory, Replica, ReplicaSet
from tests.support.load import unique_user


@pytest.mark.parametrize("lsn", [0, 0x16B3748, (0x3 << 32) | 0xAB, (0xFFFFFFFF << 32) | 0xFFFFFFFF])
def test_a_token_names_the_wal_position_it_was_made_from(lsn):
    assert decode(encode(lsn)) == lsn


def test_tokens_read_as_postgresql_writes_lsns():
    assert encode(0x16B3748) == "0/16B3748"
    assert decode("0/16b3748") == 0x16B3748


@pytest.mark.parametrize("raw", ["", "0", "not-a-token", "1/2/3", "123456789/0", "0/0 x"])
def test_anything_else_sends_the_read_to_the_primary(raw):
    assert decode(raw) == UNREACHABLE


def test_lag_is_the_time_since_the_primary_first_passed_the_replayed_position():
    history = LsnHistory(keep=60)
    for at, lsn in [(10.0, 100), (10.25, 100), (10.5, 200), (10.75, 300)]:
        history.add(at, lsn)
    assert history.lag(300, now=20.0) == 0.0  # has everything: not behind, however old the last write
    assert history.lag(250, now=11.0) == pytest.approx(0.25)  # 300 was first seen at 10.75
    assert history.lag(150, now=11.0) == pytest.approx(0.5)  # 200 at 10.5 (not 10.25: 100 did not move)
    assert history.lag(50, now=11.0) == pytest.approx(1.0)


def test_a_primary_with_a_shorter_history_starts_the_history_over():
    history = LsnHistory(keep=60)
    history.add(1.0, 500)
    history.add(2.0, 400)  # a promoted standby that was behind
    assert history.lag(400, now=3.0) == 0.0


def test_old_positions_are_forgotten_but_a_far_behind_replica_stays_far_behind():
    history = LsnHistory(keep=5)
    for n in range(100):
        history.add(float(n), n)
    assert len(history.samples) <= 7
    assert history.lag(0, now=99.0) >= 5


class _Pool:
    pass


def test_round_robin_over_replicas_in_rotation_that_reached_the_token():
    a = Replica("postgresql://u:secret@a/db", _Pool())  # type: ignore[arg-type]
    b = Replica("postgresql://b/db", _Pool())  # type: ignore[arg-type]
    replicas = ReplicaSet([a, b], max_lag=1.0)
    assert replicas.choose() is None  # not sampled yet: the primary
    for r, lsn in ((a, 100), (b, 200)):
        r.replay_lsn = lsn
        r.put_in()
    assert [replicas.choose() for _ in range(4)] == [a, b, a, b]
    assert [replicas.choose(150) for _ in range(2)] == [b, b]
    assert replicas.choose(201) is None
    b.take_out("test")
    assert replicas.choose(150) is None
    assert a.status()["url"] == "postgresql://u:***@a/db"


def test_without_replicas_every_write_answers_a_token_that_reads_accept(client):
    created = client.post("/api/v1/users", json=unique_user("nrep"))
    uid = created.json()["id"]
    patched = client.patch(f"/api/v1/users/{uid}", json={"bio": "b"})
    read = client.get(f"/api/v1/users/{uid}", headers={HEADER: created.headers[HEADER]})
    deleted = client.delete(f"/api/v1/users/{uid}")
    assert [r.headers.get(HEADER) for r in (created, patched, deleted)] == ["primary"] * 3
    assert read.status_code == 200
    assert HEADER not in read.headers
    missing = client.delete(f"/api/v1/users/{uid}")
    assert missing.status_code == 404
    assert HEADER not in missing.headers  # only successful writes carry one


def test_the_openapi_document_declares_the_header_on_writes_and_reads(client):
    paths = client.get("/openapi.json").json()["paths"]
    for path, method, status in [
        ("/api/v1/users", "post", "201"),
        ("/api/v1/users/{id}", "patch", "200"),
        ("/api/v1/users/{id}", "delete", "204"),
    ]:
        assert HEADER in paths[path][method]["responses"][status]["headers"], (path, method)
    for path in ("/api/v1/users", "/api/v1/users/{id}", "/api/v1/users/by_email/{email}"):
        params = {(p["name"], p["in"], p["required"]) for p in paths[path]["get"]["parameters"]}
        assert (HEADER, "header", False) in params, path
    assert "parameters" not in paths["/api/v1/auth/lookup"]["post"]  # credentials: always the primary
