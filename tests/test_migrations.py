"""`datasvc migrate` against a real PostgreSQL: round trip, concurrent runs, a killed migrator, drift."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from starlette.testclient import TestClient

from datasvc import logs, migrations
from datasvc.app import create_app
from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT
from tests.support.waits import until_blocking

MIGRATIONS = PROJECT_ROOT / "migrations"
REGISTRY = Registry.load(PROJECT_ROOT / "sql")
SHIPPED = migrations.local_ids(MIGRATIONS)


def _scalar(url: str, sql: str) -> object:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
        return row[0] if row else None


def _table_exists(url: str, name: str) -> bool:
    return _scalar(url, f"SELECT to_regclass('public.{name}') IS NOT NULL") is True


def _migrate(url: str, migrations_dir: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DATABASE_URL": url, "DATASVC_MIGRATIONS_DIR": str(migrations_dir)}
    return subprocess.Popen(
        [sys.executable, "-m", "datasvc", "migrate", *args],
        env=env,
        stdin=subprocess.DEVNULL,  # not a terminal: a rollback that loses data needs --yes
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_migrate(url: str, migrations_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = _migrate(url, migrations_dir, *args)
    out, err = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def migrations_dir(tmp_path: Path) -> Path:
    """A copy of the shipped migrations that a test may add to or edit."""
    target = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS, target)
    return target


def _add(migrations_dir: Path, mid: str, forward: str, rollback: str = "SELECT 1;\n") -> None:
    depends = SHIPPED[-1]
    (migrations_dir / f"{mid}.sql").write_text(f"-- A test migration.\n-- depends: {depends}\n{forward}")
    (migrations_dir / f"{mid}.rollback.sql").write_text(rollback)


def test_apply_rollback_all_and_reapply(empty_database_url):
    url = empty_database_url
    assert migrations.apply(url, MIGRATIONS) == SHIPPED
    assert _table_exists(url, "users")
    assert migrations.apply(url, MIGRATIONS) == []

    assert migrations.rollback(url, MIGRATIONS, None) == list(reversed(SHIPPED))
    assert not _table_exists(url, "users")
    state = migrations.status(url, MIGRATIONS)
    assert (state.applied, state.pending, state.drift) == ([], SHIPPED, False)

    assert migrations.apply(url, MIGRATIONS) == SHIPPED
    state = migrations.status(url, MIGRATIONS)
    assert (state.applied, state.pending, state.drift, state.unrecorded) == (SHIPPED, [], False, [])


def test_rollback_one_takes_back_only_the_latest(empty_database_url, migrations_dir):
    _add(migrations_dir, "9001.extra", "CREATE TABLE extra (id int);\n", "DROP TABLE extra;\n")
    migrations.apply(empty_database_url, migrations_dir)
    assert migrations.rollback(empty_database_url, migrations_dir) == ["9001.extra"]
    assert not _table_exists(empty_database_url, "extra")
    assert _table_exists(empty_database_url, "users")


def test_the_cli_applies_reports_and_rolls_back(empty_database_url):
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        proc = _migrate(empty_database_url, MIGRATIONS, *args)
        out, err = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)

    assert run("--status").stdout.split() == [w for m in SHIPPED for w in ("pending", m)]
    assert run().stdout.strip() == f"applied: {', '.join(SHIPPED)}"
    assert run().stdout.strip() == "applied: nothing (up to date)"
    assert run("--status").stdout.split() == [w for m in SHIPPED for w in ("applied", m)]
    done = run("--rollback", "0", "--yes")
    assert (done.returncode, done.stdout.strip()) == (0, f"rolled back: {', '.join(reversed(SHIPPED))}")


def test_concurrent_migrators_serialize_and_exactly_one_applies(empty_database_url):
    """A rolling deploy: several `datasvc migrate` start together; one applies, the rest find nothing."""
    url = empty_database_url
    with psycopg.connect(url, autocommit=True) as holder:
        # Hold the migration lock ourselves until every migrator is queued behind it, so they truly race.
        assert holder.execute(REGISTRY["migrate.try_lock"].text).fetchone() == (True,)
        procs = [_migrate(url, MIGRATIONS) for _ in range(4)]
        waiting = (
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND application_name = 'datasvc-migrate'"
        )
        until_blocking(lambda: _scalar(url, waiting) == 4, timeout=30.0)
        assert not _table_exists(url, "users")
    outputs = [p.communicate(timeout=60) for p in procs]

    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    lines = sorted(out.strip() for out, _ in outputs)
    assert lines == [f"applied: {', '.join(SHIPPED)}"] + ["applied: nothing (up to date)"] * 3
    assert _scalar(url, "SELECT count(*) FROM _yoyo_migration") == len(SHIPPED)


def test_a_migrator_killed_mid_run_does_not_block_the_next(empty_database_url, migrations_dir):
    url = empty_database_url
    migrations.apply(url, migrations_dir)
    _add(migrations_dir, "9002.slow", "CREATE TABLE slow_marker (id int);\nSELECT pg_sleep(60);\n")
    proc = _migrate(url, migrations_dir)
    sleeping = (
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE datname = current_database() AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()"
    )
    until_blocking(lambda: _scalar(url, sleeping) == 1, timeout=30.0)
    assert _scalar(url, "SELECT count(*) FROM yoyo_lock") == 1  # yoyo's row, which never expires

    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    assert _scalar(url, "SELECT count(*) FROM yoyo_lock") == 1  # left behind by the dead migrator

    (migrations_dir / "9002.slow.sql").write_text(
        f"-- The same migration, fixed.\n-- depends: {SHIPPED[-1]}\nCREATE TABLE slow_marker (id int);\n"
    )
    done = _migrate(url, migrations_dir)
    out, err = done.communicate(timeout=60)
    # yoyo alone would wait 10 s on the stale row, then fail (its lock timeout): success is the proof,
    # no clock needed. The killed session's transaction (which created slow_marker) is aborted within
    # about a second because the server checks for the client.
    assert (done.returncode, out.strip()) == (0, "applied: 9002.slow"), err
    assert _scalar(url, "SELECT count(*) FROM yoyo_lock") == 0
    assert _table_exists(url, "slow_marker")


def test_a_stale_yoyo_lock_row_is_cleared_under_the_advisory_lock(empty_database_url):
    migrations.apply(empty_database_url, MIGRATIONS)
    with psycopg.connect(empty_database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO yoyo_lock (locked, ctime, pid) VALUES (1, now(), 999999)")
    # yoyo alone would wait 10 s on the stale row, then raise: returning at all is the proof.
    assert migrations.rollback(empty_database_url, MIGRATIONS) == [SHIPPED[-1]]


def test_waiting_for_a_held_lock_gives_up_after_the_wait(empty_database_url):
    with psycopg.connect(empty_database_url, autocommit=True) as holder:
        holder.execute(REGISTRY["migrate.try_lock"].text)
        with pytest.raises(migrations.MigrationLockTimeout, match="held the lock"):
            migrations.apply(empty_database_url, MIGRATIONS, wait=0.5)
    assert not _table_exists(empty_database_url, "users")


def test_status_reports_an_applied_file_that_changed(empty_database_url, migrations_dir):
    migrations.apply(empty_database_url, migrations_dir)
    first = migrations_dir / f"{SHIPPED[0]}.sql"
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")

    state = migrations.status(empty_database_url, migrations_dir)
    assert (state.changed, state.unknown, state.drift) == ([SHIPPED[0]], [], True)
    proc = _migrate(empty_database_url, migrations_dir, "--status")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1
    assert f"changed   {SHIPPED[0]}" in out.splitlines()


def test_an_edited_rollback_file_is_drift_too(empty_database_url, migrations_dir):
    migrations.apply(empty_database_url, migrations_dir)
    (migrations_dir / f"{SHIPPED[0]}.rollback.sql").write_text("SELECT 1;\n")
    assert migrations.status(empty_database_url, migrations_dir).changed == [SHIPPED[0]]


def test_status_reports_migrations_the_code_does_not_know(empty_database_url, migrations_dir):
    _add(migrations_dir, "9003.newer", "CREATE TABLE newer (id int);\n", "DROP TABLE newer;\n")
    migrations.apply(empty_database_url, migrations_dir)
    state = migrations.status(empty_database_url, MIGRATIONS)  # an older release's files
    assert (state.applied, state.unknown, state.drift) == (SHIPPED, ["9003.newer"], True)


def test_a_database_migrated_by_plain_yoyo_is_adopted(empty_database_url):
    """yoyo.ini works as shipped; the next `datasvc migrate` records the hashes it could not see."""
    yoyo = Path(sys.executable).with_name("yoyo")
    subprocess.run(
        [str(yoyo), "apply", "--database", migrations.yoyo_url(empty_database_url)],
        cwd=PROJECT_ROOT,
        check=True,
        capture_output=True,
        timeout=60,
    )
    assert _table_exists(empty_database_url, "users")
    assert migrations.status(empty_database_url, MIGRATIONS).unrecorded == SHIPPED
    assert migrations.apply(empty_database_url, MIGRATIONS) == []
    assert migrations.status(empty_database_url, MIGRATIONS).unrecorded == []


def test_readiness_reports_drift_without_failing(settings, migrations_dir):
    first = migrations_dir / f"{SHIPPED[0]}.sql"
    first.write_text(first.read_text() + "\n-- edited after it was applied\n")
    with TestClient(create_app(settings.with_overrides(migrations_dir=migrations_dir))) as client:
        response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["drift"] == {"changed": [SHIPPED[0]], "unknown": [], "unrecorded": []}


def test_readiness_without_drift(client):
    assert client.get("/health/ready").json()["drift"] == {"changed": [], "unknown": [], "unrecorded": []}


# -- issue 22: a rollback is guarded ---------------------------------------------------------------


def _insert_user(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn, psycopg.RawCursor(conn) as cur:
        cur.execute(REGISTRY["users.create"].text, ("keep@example.com", "keep_me", "x" * 60, None, None))


@pytest.mark.parametrize("count", ["-1", "abc", "1.5", "-0"], ids=["negative", "word", "fraction", "minus-0"])
def test_a_rollback_count_that_is_not_a_whole_number_is_a_usage_error_changing_nothing(database_url, count):
    done = _run_migrate(database_url, MIGRATIONS, "--rollback", count, "--yes")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "N must be a whole number of migrations" in done.stderr
    assert "Traceback" not in done.stderr
    assert migrations.status(database_url, MIGRATIONS).applied == SHIPPED


def test_rolling_back_everything_is_refused_without_yes_naming_what_would_be_lost(database_url):
    _insert_user(database_url)
    done = _run_migrate(database_url, MIGRATIONS, "--rollback", "0")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "every migration (the whole schema)" in done.stderr
    assert "users (1 row)" in done.stderr
    assert "pass --yes" in done.stderr
    assert migrations.status(database_url, MIGRATIONS).applied == SHIPPED
    assert _scalar(database_url, "SELECT count(*) FROM users") == 1

    done = _run_migrate(database_url, MIGRATIONS, "--rollback", "0", "--yes")
    assert done.returncode == 0, done.stderr
    assert not _table_exists(database_url, "users")


def test_rolling_back_a_migration_that_drops_a_table_with_rows_needs_yes(empty_database_url, migrations_dir):
    url = empty_database_url
    _add(migrations_dir, "9004.kept", "CREATE TABLE kept (id int);\n", "DROP TABLE IF EXISTS kept;\n")
    migrations.apply(url, migrations_dir)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO kept VALUES (1), (2)")
    done = _run_migrate(url, migrations_dir, "--rollback")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "undo 9004.kept and drop kept (2 rows)" in done.stderr
    assert _table_exists(url, "kept")

    assert _run_migrate(url, migrations_dir, "--rollback", "--yes").returncode == 0
    assert not _table_exists(url, "kept")


def test_rolling_back_an_empty_table_needs_no_confirmation(empty_database_url, migrations_dir):
    _add(migrations_dir, "9005.empty", "CREATE TABLE empty_one (id int);\n", "DROP TABLE empty_one;\n")
    migrations.apply(empty_database_url, migrations_dir)
    done = _run_migrate(empty_database_url, migrations_dir, "--rollback")
    assert (done.returncode, done.stdout.strip()) == (0, "rolled back: 9005.empty"), done.stderr


def test_a_rollback_is_refused_while_the_service_is_connected_unless_forced(
    empty_database_url, migrations_dir
):
    url = empty_database_url
    _add(migrations_dir, "9006.extra", "CREATE TABLE extra (id int);\n", "DROP TABLE extra;\n")
    migrations.apply(url, migrations_dir)
    with psycopg.connect(url, autocommit=True, application_name="datasvc:billing") as service:
        pid = service.info.backend_pid
        done = _run_migrate(url, migrations_dir, "--rollback", "--yes")
        assert done.returncode == 1, done.stdout + done.stderr
        assert f"pid {pid} from 127.0.0.1" in done.stderr
        assert "--force" in done.stderr
        assert _table_exists(url, "extra")

        forced = _run_migrate(url, migrations_dir, "--rollback", "--yes", "--force")
        assert forced.returncode == 0, forced.stderr
    assert not _table_exists(url, "extra")


def test_a_first_migration_logs_one_line_per_migration(empty_database_url, capsys):
    logs.configure("info")
    migrations.apply(empty_database_url, MIGRATIONS)
    lines = capsys.readouterr().out.splitlines()
    assert not [line for line in lines if "step" in line], "yoyo's per-step lines are debug"
    applying = [json.loads(line)["migration"] for line in lines if "applying migration" in line]
    assert applying == SHIPPED
