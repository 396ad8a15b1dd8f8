"""`datasvc serve` start-up: signals stop it at every stage, a port in use is one line, SIGHUP is named."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from datasvc.settings import PROJECT_ROOT, Settings
from tests.support.servers import ProcessServer, environment, free_port

WAITING = "transaction mode: waiting for the database before serving"


def _serve(settings: Settings, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "datasvc", "serve"],
            cwd=PROJECT_ROOT,
            env=environment(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _serve_to_the_end(settings: Settings) -> subprocess.CompletedProcess[str]:
    """``datasvc serve`` expected to exit by itself: its exit code and output."""
    return subprocess.run(
        [sys.executable, "-m", "datasvc", "serve"],
        cwd=PROJECT_ROOT,
        env=environment(settings),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _until_logged(proc: subprocess.Popen[bytes], log: Path, text: str, timeout: float = 60.0) -> None:
    """Wait (a condition with a deadline, generous for a loaded machine) until ``text`` is in the log."""
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")
        assert time.monotonic() < deadline, f"not logged within {timeout} s: {text!r}"
        time.sleep(0.05)


@pytest.fixture
def unreachable(settings: Settings) -> Settings:
    """Transaction mode towards a port where nothing listens: the pooler (or database) is down."""
    return settings.with_overrides(
        database_url=f"postgresql://datasvc_app@127.0.0.1:{free_port()}/datasvc",
        pool_mode="transaction",
        port=free_port(),
        access_log=False,
    )


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGTERM, 0), (signal.SIGINT, 130), (signal.SIGHUP, 0)],
    ids=["SIGTERM", "SIGINT", "SIGHUP"],
)
def test_a_signal_stops_serve_at_once_while_transaction_mode_waits_for_the_database(
    unreachable, tmp_path, sig, code
):
    log = tmp_path / "serve.log"
    proc = _serve(unreachable, log)
    try:
        _until_logged(proc, log, WAITING)
        proc.send_signal(sig)
        # At once: well inside the start timeout (60 s) it would otherwise wait; generous for the machine.
        assert proc.wait(15) == code, log.read_text()
    finally:
        proc.kill()
        proc.wait(10)
    assert "Traceback" not in log.read_text()


def test_transaction_mode_gives_up_after_the_start_timeout_with_one_line(unreachable, tmp_path):
    done = _serve_to_the_end(unreachable.with_overrides(start_timeout=1.0, log_level="error"))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("datasvc: the database cannot be reached (")
    assert "no answer within DATASVC_START_TIMEOUT=1s" in done.stderr


def test_sighup_is_logged_as_sighup(settings, tmp_path):
    log = tmp_path / "serve.log"
    server = ProcessServer(settings.with_overrides(drain_seconds=0.5), log)
    with server:
        server.signal(signal.SIGHUP)
        assert server.wait(30) == 0
    text = log.read_text()
    assert "SIGHUP: draining" in text
    assert "SIGTERM: draining" not in text


def test_a_port_in_use_is_one_plain_line_and_exit_3(settings, tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = _serve_to_the_end(settings.with_overrides(port=port, host="127.0.0.1", access_log=False))
    assert done.returncode == 3, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"datasvc: 127.0.0.1:{port} is already in use"), line
