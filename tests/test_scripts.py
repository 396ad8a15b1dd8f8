"""`scripts/test`: the quick inner loop, and the suite on a machine with no PostgreSQL service at all."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from datasvc.embedded import embedded, wheel_bindir
from datasvc.settings import PROJECT_ROOT

TIMEOUT = 300  # seconds: initdb, start and the template's migrations on a loaded 2-core machine take ~30 s


def _environment(*, keep_server: bool, **extra: str) -> dict[str, str]:
    """Our environment less pytest's own variables and, unless kept, the test server (``DATASVC_TEST_*``)."""
    drop = ("DATABASE_URL", "PYTEST_") + (() if keep_server else ("DATASVC_TEST_",))
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)} | extra


def _scripts_test(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


@pytest.mark.slow
def test_quick_runs_pytest_alone_without_install_lint_or_type_check():
    argv = ["scripts/test", "--quick", "-q", "-p", "no:randomly", "tests/test_settings.py", "-k", "redact"]
    run = _scripts_test(argv, _environment(keep_server=True))
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    assert " passed" in run.stdout
    for step in ("== ruff", "== sql lint", "== mypy", "== pytest"):
        assert step not in output


def _can_hide_postgresql() -> bool:
    if os.geteuid() != 0 or not all(shutil.which(tool) for tool in ("unshare", "ip")):
        return False
    probe = subprocess.run(["unshare", "-mn", "true"], capture_output=True, check=False)
    return probe.returncode == 0


@pytest.mark.slow
@pytest.mark.skipif(not _can_hide_postgresql(), reason="needs root, unshare -mn and ip to hide PostgreSQL")
def test_scripts_test_runs_on_a_private_cluster_where_no_postgresql_runs(tmp_path):
    # A private network namespace (nothing listens on 127.0.0.1:5432 there) and mount namespace where
    # Debian's server binaries and clusters are empty tmpfs: a machine with Python only.
    data_dir = Path(tempfile.mkdtemp(prefix="datasvc-test-private-"))  # the postgres account reaches it
    data_dir.chmod(0o755)
    hide = (
        "ip link set lo up && mount -t tmpfs tmpfs /usr/lib/postgresql && "
        "mount -t tmpfs tmpfs /etc/postgresql && "
        "exec scripts/test --quick -q -p no:randomly tests/test_health.py"
    )
    try:
        env = _environment(keep_server=False, DATASVC_TEST_DATA_DIR=str(data_dir))
        run = _scripts_test(["unshare", "-mn", "sh", "-c", hide], env)
        output = run.stdout + run.stderr
        assert run.returncode == 0, output
        assert "testing on a private cluster at postgresql://postgres@127.0.0.1:" in run.stderr
        assert re.search(r"^\d+ passed", run.stdout, re.MULTILINE), output
        cluster = embedded(data_dir, 0)
        assert cluster.bindir == wheel_bindir(), "the embedded machinery's PostgreSQL, from the wheel"
        assert cluster.running() is None, "scripts/test stops the cluster it started"
    finally:
        embedded(data_dir, 0).stop()
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.mark.slow
def test_a_component_that_cannot_be_had_stops_the_run_at_once_naming_it(tmp_path):
    """No npm registry (an address where nothing listens) and an empty cache: Spectral cannot be had."""
    env = _environment(
        keep_server=True,
        DATASVC_CACHE=str(tmp_path / "cache"),  # scripts/spectral's cache, empty
        npm_config_registry="http://127.0.0.1:9/",
        npm_config_fetch_retries="0",
    )
    run = _scripts_test(["scripts/test"], env)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1, run.stdout + run.stderr
    assert lines[-1].startswith("scripts/test: cannot get Spectral, the OpenAPI linter"), run.stderr
    assert "needs npm (apt-get install npm) and the npm registry" in lines[-1]
    assert "Python packages" not in run.stderr  # stopped before installing, linting or testing anything
    assert "== pytest" not in run.stderr
    assert [line for line in lines if line.startswith("scripts/test: ")] == lines  # one line per step
