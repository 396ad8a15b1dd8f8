"""Every `datasvc` command meets a configuration or database problem with one line and an exit code,
never a traceback (the codes: `datasvc.cli.main`'s docstring)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from datasvc.cli import build_parser, main
from datasvc.embedded import wheel_bindir
from datasvc.settings import PROJECT_ROOT

UNREACHABLE = "postgresql://app:s3cret@127.0.0.1:1/datasvc"  # nothing listens on port 1
MALFORMED = "app:s3cret@db/datasvc"

# Every command line, and its exit code with an unreachable DATABASE_URL (None: not run that way, see why).
COMMANDS: dict[str, tuple[list[str], int | None]] = {
    "serve": (["serve"], None),  # an unreachable database is waited for (readiness 503): tests/test_serve.py
    "db status": (["db", "status"], 3),  # the embedded cluster it reports on: not initialised
    "db start": (["db", "start"], 2),  # the embedded cluster, which cannot keep its data (below)
    "db stop": (["db", "stop"], 0),
    "db url": (["db", "url"], 0),
    "db psql": (["db", "psql", "-c", "SELECT 1"], None),  # psql itself answers (exit 2, its own words)
    "migrate": (["migrate"], 1),
    "migrate --status": (["migrate", "--status"], 1),
    "migrate --rollback": (["migrate", "--rollback", "--yes"], 1),
    "token hash": (["token", "hash"], 0),
    "token new": (["token", "new"], 0),
    "sql list": (["sql", "list"], 0),
    "sql show": (["sql", "show", "users.get_by_id"], 0),
    "sql check": (["sql", "check"], 1),
    "sql explain": (["sql", "explain", "users.get_by_id", "--param", "id=1"], 1),
    "sql schema": (["sql", "schema"], 1),
}


def _commands(parser: argparse.ArgumentParser, prefix: str = "") -> set[str]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix.strip()}
    return {c for name, sub in subs[0].choices.items() for c in _commands(sub, f"{prefix} {name}")}


def test_the_walk_covers_every_command():
    walked = {name.partition(" --")[0] for name in COMMANDS}
    assert walked == _commands(build_parser())


def _datasvc(argv: list[str], url: str, tmp_path: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATASVC_", "DATABASE_URL"))}
    (tmp_path / "file").write_text("")
    # The embedded cluster's data directory cannot be made (its parent is a file): commands that would
    # start it say so at once rather than running initdb.
    env |= {"DATABASE_URL": url, "DATASVC_DATA_DIR": str(tmp_path / "file" / "data")}
    return subprocess.run(
        [sys.executable, "-m", "datasvc", *argv],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _one_line_no_traceback(done: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) <= 1, done.stderr
    assert "s3cret" not in done.stderr + done.stdout or done.args[-2:] == ["db", "url"]
    return lines[0] if lines else ""


@pytest.mark.parametrize("name", [n for n, (_, code) in COMMANDS.items() if code is not None])
def test_every_command_with_an_unreachable_database(name, tmp_path):
    argv, code = COMMANDS[name]
    done = _datasvc(argv, UNREACHABLE, tmp_path, stdin="a-token\n")
    line = _one_line_no_traceback(done)
    assert done.returncode == code, done.stdout + done.stderr
    if code == 1:
        assert line.startswith(
            "datasvc: the database cannot be reached (postgresql://app:***@127.0.0.1:1/"
        ), line
        assert "refused" in line.lower()


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_with_a_malformed_database_url(name, tmp_path):
    done = _datasvc(COMMANDS[name][0], MALFORMED, tmp_path, stdin="a-token\n")
    line = _one_line_no_traceback(done)
    assert done.returncode == 2, done.stdout + done.stderr
    assert line == "datasvc: DATABASE_URL: must be a URL like postgresql://user:password@host:5432/dbname"


def test_the_embedded_default_on_a_read_only_install_says_to_set_database_url(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATASVC_", "DATABASE_URL"))}
    read_only = tmp_path / "site-packages"
    read_only.mkdir()
    env["DATASVC_DATA_DIR"] = str(read_only / ".datasvc")
    argv = [sys.executable, "-m", "datasvc", "migrate"]
    if os.geteuid() == 0:  # root writes through permission bits: make the folder truly read-only
        if shutil.which("unshare") is None:
            pytest.skip("as root, needs unshare -m for a read-only mount")
        argv = [
            "unshare",
            "-m",
            "sh",
            "-c",
            f'mount --bind -o ro "{read_only}" "{read_only}" && exec "$@"',
            "-",
        ]
        argv += [sys.executable, "-m", "datasvc", "migrate"]
    else:
        read_only.chmod(0o555)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    line = _one_line_no_traceback(done)
    assert done.returncode == 2
    assert line.startswith(
        f"datasvc: the embedded PostgreSQL cannot keep its data in {read_only / '.datasvc'}"
    )
    assert "set DATABASE_URL" in line


@pytest.mark.parametrize("argv", [["sql", "list"], ["sql", "show", "users.get_by_id"], ["token", "new"]])
def test_a_closed_pipe_is_a_quiet_exit(argv):
    """`datasvc sql list | head -1`: the reader went away; no BrokenPipeError, no complaint."""
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first write: every write fails with EPIPE
    try:
        done = subprocess.run(
            [sys.executable, "-m", "datasvc", *argv],
            cwd=PROJECT_ROOT,
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize(("option", "value"), [("--port", "99999"), ("--port", "0"), ("--workers", "none")])
def test_serve_options_out_of_range_are_usage_errors(option, value, capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["serve", option, value])
    assert exited.value.code == 2
    assert f"argument {option}: '{value}' must be" in capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(["--version"])
    assert exited.value.code == 0
    assert re.fullmatch(r"datasvc \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


def _options(parser: argparse.ArgumentParser, prefix: str = "datasvc") -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _options(sub, f"{prefix} {name}")
        elif action.option_strings and not isinstance(action, argparse._HelpAction):
            found.append((prefix, action))
    return found


@pytest.mark.parametrize(("command", "action"), _options(build_parser()), ids=lambda x: getattr(x, "dest", x))
def test_every_option_of_every_command_is_described(command, action):
    assert action.help, f"{command} {action.option_strings[0]}"
    assert action.help != argparse.SUPPRESS


def test_db_psql_runs_psql_on_the_database_url(database_url, tmp_path):
    done = _datasvc(["db", "psql", "-At", "-c", "SELECT count(*) FROM users"], database_url, tmp_path)
    assert (done.returncode, done.stdout.strip()) == (0, "0"), done.stderr


def test_db_psql_on_a_machine_with_only_python_uses_the_wheels_psql(database_url, tmp_path):
    if wheel_bindir() is None:
        pytest.skip("no embedded-server wheel on this platform")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATASVC_", "DATABASE_URL"))}
    env |= {"DATABASE_URL": database_url, "PATH": str(Path(sys.executable).parent)}  # no psql on it
    done = subprocess.run(
        [sys.executable, "-m", "datasvc", "db", "psql", "-At", "-c", "SHOW server_version_num"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().isdigit()


def test_db_stop_refuses_while_a_serve_owns_the_cluster(tmp_path, capsys, monkeypatch):
    """`datasvc db stop` under a live serve would leave it with no database: refused unless --force."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("DATASVC_DATA_DIR", str(tmp_path))
    (tmp_path / "serve.pid").write_text(f"{os.getpid()} 8000\n")  # a live process owns it: this one
    assert main(["db", "stop"]) == 1
    err = capsys.readouterr().err
    assert f"datasvc serve pid {os.getpid()} uses this embedded PostgreSQL" in err
    assert "--force" in err
    assert main(["db", "stop", "--force"]) == 0  # nothing runs there: "not running"
    assert capsys.readouterr().out.startswith("not running")
