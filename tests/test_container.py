"""The container, tested without a Docker engine: lint the Dockerfile, validate compose.yaml against the
compose specification (vendored by check-jsonschema, no download), and run the image's entry commands with
the environment the Dockerfile sets."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from datasvc.cli import _parser
from datasvc.settings import PROJECT_ROOT

BIN = Path(sys.executable).parent
DOCKERFILE = PROJECT_ROOT / "Dockerfile"
COMPOSE = PROJECT_ROOT / "compose.yaml"


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=60, check=False)


def test_the_dockerfile_passes_hadolint():
    result = _run(BIN / "hadolint", "--no-color", DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_fails_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install curl\nCMD datasvc serve\n")
    result = _run(BIN / "hadolint", "--no-color", bad)
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # the :latest tag


def test_compose_validates_against_the_compose_spec():
    result = _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_misspelt_compose_key_fails_validation(tmp_path):
    bad = tmp_path / "compose.yaml"
    bad.write_text(COMPOSE.read_text().replace("    healthcheck:\n", "    healthchek:\n", 1))
    result = _run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", bad)
    assert result.returncode != 0
    assert "healthchek" in result.stdout


def test_compose_runs_migrations_once_before_a_ready_service():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert services["migrate"]["command"] == ["migrate"]
    assert services["datasvc"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "/health/ready" in " ".join(services["datasvc"]["healthcheck"]["test"])
    for name in ("migrate", "datasvc"):  # every command the compose file runs is one the CLI accepts
        _parser().parse_args(services[name]["command"])


def dockerfile_env() -> dict[str, str]:
    """The ENV of the Dockerfile's final stage."""
    final = DOCKERFILE.read_text().split("\nFROM ")[-1]
    env: dict[str, str] = {}
    for block in re.findall(r"^ENV (.*?)(?<!\\)$", final.replace("\\\n", " "), flags=re.M):
        for pair in shlex.split(block):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def test_the_image_sets_where_sql_and_migrations_live():
    env = dockerfile_env()
    assert env["DATASVC_SQL_DIR"] == "/app/sql"
    assert env["DATASVC_MIGRATIONS_DIR"] == "/app/migrations"
    text = DOCKERFILE.read_text()
    assert "COPY sql /app/sql" in text
    assert "COPY migrations /app/migrations" in text
    assert re.search(r"^USER 10001", text, flags=re.M)  # never root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_the_entry_commands_migrate_then_serve(empty_database_url, tmp_path):
    """`datasvc migrate` then `datasvc serve`, with the image's environment (its /app mapped to a copy)."""
    app = tmp_path / "app"
    shutil.copytree(PROJECT_ROOT / "sql", app / "sql")
    shutil.copytree(PROJECT_ROOT / "migrations", app / "migrations")
    image_env = {k: v.replace("/app/", f"{app}/") for k, v in dockerfile_env().items() if k != "PATH"}
    port = _free_port()
    env = {
        **os.environ,
        **image_env,
        "DATABASE_URL": empty_database_url,
        "DATASVC_HOST": "127.0.0.1",  # the image binds 0.0.0.0; tests stay on loopback
        "DATASVC_PORT": str(port),
    }
    datasvc = str(BIN / "datasvc")
    migrate = subprocess.run([datasvc, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert migrate.returncode == 0, migrate.stderr
    assert migrate.stdout.startswith("applied: 0001")

    server = subprocess.Popen([datasvc, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=2) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert server.poll() is None, server.communicate()
                assert time.monotonic() < deadline, "serve did not become ready"
                time.sleep(0.2)
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
    assert server.returncode == 0
