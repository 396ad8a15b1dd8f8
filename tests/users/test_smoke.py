HASH = "$2b$12$" + "a" * 53


def test_create_then_get(client):
    created = client.post(
        "/api/v1/users", json={"email": "a@b.io", "username": "alice", "hashed_password": HASH}
    )
    assert created.status_code == 201, created.text
    got = client.get(created.headers["location"])
    assert got.json()["username"] == "alice"
