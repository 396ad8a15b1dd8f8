"""batchGet, batchCreate and Idempotency-Key behind PgBouncer in transaction mode.

Parametrised over PgBouncer 1.24 and 1.18 by the ``settings`` fixture of this folder (tests/pooler/): each
keyed write and each batch is one statement, so nothing depends on a session surviving between two.
"""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.support.api import new_user


def test_batches_and_keyed_writes_work_through_the_pooler(client: TestClient) -> None:
    users = [new_user(username=f"pooled{i}", email=f"pooled{i}@example.com") for i in range(3)]
    key = {"Idempotency-Key": '"pooled-batch"'}
    made = [client.post("/api/v1/users:batchCreate", json={"users": users}, headers=key) for _ in range(2)]
    assert [m.status_code for m in made] == [201, 201], made[0].text
    assert made[1].content == made[0].content
    assert made[1].headers["idempotent-replayed"] == "true"
    ids = [u["id"] for u in made[0].json()["items"]]

    got = client.post("/api/v1/users:batchGet", json={"ids": [ids[2], 0, ids[0]]})
    assert got.status_code == 200, got.text
    assert [u["id"] for u in got.json()["items"]] == [ids[2], ids[0]]
    assert got.json()["missing"] == [0]

    single = {"Idempotency-Key": "pooled-create"}
    first = client.post("/api/v1/users", json=new_user(), headers=single)
    again = client.post("/api/v1/users", json=new_user(), headers=single)
    assert (first.status_code, again.status_code) == (201, 201), first.text
    assert again.content == first.content

    clash = client.post("/api/v1/users:batchCreate", json={"users": users})
    assert clash.status_code == 409
    assert len(clash.json()["errors"]) == 6  # each item's username and email are taken
