"""A private PostgreSQL for `datasvc serve` when ``DATABASE_URL`` is unset.

It uses the machine's own server binaries (``pg_config --bindir``, or Debian's /usr/lib/postgresql/*/bin),
keeps its data under ``DATASVC_DATA_DIR``, listens on 127.0.0.1 only, and trusts local connections. As
root, it runs the server as the unprivileged ``postgres`` (or ``nobody``) account: PostgreSQL refuses root.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("datasvc.embedded")

DATABASE = "datasvc"


class EmbeddedError(RuntimeError):
    """The private PostgreSQL could not be found, initialised or started."""


@dataclass(frozen=True)
class EmbeddedPostgres:
    bindir: Path
    data_dir: Path
    port: int
    run_as: str | None

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    def _run(self, *args: str) -> None:
        result = subprocess.run(self._cmd(*args), capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise EmbeddedError(
                f"{Path(args[0]).name} failed: {result.stderr.strip() or result.stdout.strip()}"
            )

    def ensure_running(self) -> bool:
        """Initialise on first use, start if stopped, create the database; True if this call started it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as is not None:
            account = pwd.getpwnam(self.run_as)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            log.info("initialising embedded PostgreSQL", extra={"pgdata": str(self.pgdata)})
            self._run(
                str(self.bindir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-locale",
            )
        started = not self._is_running()
        if started:
            self._run(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.pgdata),
                "-l",
                str(self.data_dir / "postgres.log"),
                "-w",
                "-t",
                "30",
                "-o",
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir}",
                "start",
            )
        self._create_database()
        return started

    def _is_running(self) -> bool:
        result = subprocess.run(
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "status"),
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _create_database(self) -> None:
        """Create the service's database once; `psql -l` lists databases without any SQL of ours."""
        listing = subprocess.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-lqtA"],
            capture_output=True,
            text=True,
            check=False,
        )
        if listing.returncode != 0:
            raise EmbeddedError(
                f"embedded PostgreSQL does not answer on port {self.port}: {listing.stderr.strip()}"
            )
        names = {line.split("|", 1)[0] for line in listing.stdout.splitlines()}
        if DATABASE not in names:
            self._run(
                str(self.bindir / "createdb"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                DATABASE,
            )

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop")


def find_bindir() -> Path:
    """The directory holding initdb and pg_ctl for the newest PostgreSQL on this machine."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise EmbeddedError("no PostgreSQL server binaries found: install postgresql or set DATABASE_URL")


def unprivileged_account() -> str | None:
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
        except KeyError:
            continue
        return name
    raise EmbeddedError("running as root and no unprivileged account (postgres, nobody) exists")


def embedded(data_dir: Path, port: int) -> EmbeddedPostgres:
    return EmbeddedPostgres(bindir=find_bindir(), data_dir=data_dir, port=port, run_as=unprivileged_account())
