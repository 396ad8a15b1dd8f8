import psycopg
from starlette.testclient import TestClient

from datasvc.app import create_app


def test_health_does_not_touch_the_database(settings):
    dead = settings.with_overrides(database_url="postgresql://postgres@127.0.0.1:1/none", connect_timeout=0.5)
    with TestClient(create_app(dead)) as client:
        response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_when_migrated(client):
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


def test_not_ready_when_the_database_is_unreachable(settings):
    dead = settings.with_overrides(database_url="postgresql://postgres@127.0.0.1:1/none", connect_timeout=0.5)
    with TestClient(create_app(dead)) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "urn:datasvc:problem:database-unavailable"
    assert response.headers["retry-after"]


def test_not_ready_names_pending_migrations(client, database_url):
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DELETE FROM _yoyo_migration WHERE migration_id = '0001.create-users'")
    response = client.get("/health/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["type"] == "urn:datasvc:problem:not-migrated"
    assert "0001.create-users" in body["detail"]


def test_not_ready_on_an_empty_database(settings, empty_database_url):
    with TestClient(create_app(settings.with_overrides(database_url=empty_database_url))) as client:
        response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["type"] == "urn:datasvc:problem:not-migrated"
