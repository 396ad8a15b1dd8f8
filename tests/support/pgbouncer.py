"""A real PgBouncer in ``pool_mode=transaction`` in front of the test server, started by a test.

Usage::

    with PgBouncer("1.24", tmp_dir) as bouncer:           # listening on a free 127.0.0.1 port
        url = bouncer.url("datasvc_test_123", "datasvc_app")

Two builds: ``1.24`` (protocol-level prepared statements, ``max_prepared_statements = 200``), built from
Debian 13's source package by ``scripts/pgbouncer-build`` into its cache, and ``1.18``, Debian 12's
package (``scripts/apt-deps``), which passes prepared statements' names through to the server. PgBouncer
refuses to run as root, so as root it runs as the ``postgres`` account, from a private directory holding
its configuration, its log and a copy of the binary (the cache under /root is not readable by others).
Every database of the test server is reachable through it under its own name, as any role listed in
``users`` (trust, as the test server itself). ``settings``: more lines for its ``[pgbouncer]`` section.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

from datasvc.settings import Settings
from tests.support.pgserver import APP_ROLE, address
from tests.support.servers import free_port

CACHE = Path(os.environ.get("DATASVC_PGBOUNCER_CACHE", Path.home() / ".cache" / "datasvc"))
BINARIES = {"1.24": CACHE / "pgbouncer-1.24" / "pgbouncer", "1.18": Path("/usr/sbin/pgbouncer")}
INSTALLED_BY = {"1.24": "scripts/pgbouncer-build", "1.18": "scripts/apt-deps"}

# Where the service connects: straight to PostgreSQL, or through a real PgBouncer in transaction mode as
# the runtime role, the two ways an operator may run it there: 1.24 with asyncpg's statement cache on,
# 1.18 with it off (DATASVC_STATEMENT_CACHE_SIZE=0, required there). Value: (version, cache size).
TARGETS: dict[str, tuple[str, int] | None] = {
    "direct": None,
    "pgbouncer-1.24": ("1.24", 100),
    "pgbouncer-1.18": ("1.18", 0),
}

_CONFIG = """\
[databases]
* = host={server_host} port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir = {socket_dir}
auth_type = trust
auth_file = {directory}/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = {pool_size}
max_client_conn = 500
logfile = {directory}/pgbouncer.log
{extra}
"""


class PgBouncer:
    """``pgbouncer`` ``version`` in the foreground, transaction pooling to the test server."""

    def __init__(
        self,
        version: str,
        *,
        users: tuple[str, ...] = ("postgres", "datasvc_app"),
        pool_size: int = 10,
        prepared_statements: bool = True,
        server: tuple[str, int] | None = None,
        unix_socket: bool = False,
        settings: dict[str, str] | None = None,
    ) -> None:
        server_host, server_port = server or address()  # default: DATASVC_TEST_DATABASE_URL's
        binary = BINARIES[version]
        if not binary.exists():
            raise RuntimeError(f"no PgBouncer {version} at {binary}: run {INSTALLED_BY[version]}")
        self.version = version
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix=f"datasvc-pgbouncer-{version}-"))
        # Also listening on a Unix socket in its own directory: a PgBouncer beside the service (a sidecar)
        # is reached that way (`socket_url`); empty, TCP only.
        self.socket_dir = self.directory if unix_socket else None
        self.binary = self.directory / "pgbouncer"
        shutil.copy2(binary, self.binary)
        extra = "".join(f"{name} = {value}\n" for name, value in (settings or {}).items())
        if version != "1.18":  # 1.18 knows no such setting: it passes statement names through
            extra += f"max_prepared_statements = {200 if prepared_statements else 0}"
        (self.directory / "pgbouncer.ini").write_text(
            _CONFIG.format(
                server_host=server_host,
                server_port=server_port,
                port=self.port,
                socket_dir=self.socket_dir or "",
                directory=self.directory,
                pool_size=pool_size,
                extra=extra,
            )
        )
        (self.directory / "userlist.txt").write_text("".join(f'"{user}" ""\n' for user in users))
        self._as_user: str | None = None
        if os.geteuid() == 0:  # "PgBouncer should not run as root"
            self._as_user = "postgres"
            account = pwd.getpwnam(self._as_user)
            for path in (self.directory, *self.directory.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
        self.process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "pgbouncer.log"

    def url(self, dbname: str, user: str) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"

    def socket_url(self, dbname: str, user: str) -> str:
        """The libpq URL through the Unix socket (``unix_socket=True``): no TCP on the service's hop."""
        if self.socket_dir is None:
            raise RuntimeError("this PgBouncer listens on TCP only: start it with unix_socket=True")
        return f"postgresql://{user}@/{dbname}?host={self.socket_dir}&port={self.port}"

    def start(self, timeout: float = 30.0) -> None:
        self._out = (self.directory / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [str(self.binary), str(self.directory / "pgbouncer.ini")],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            user=self._as_user,
        )
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited with {self.process.returncode}: {self.log()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"pgbouncer did not listen within {timeout} s: {self.log()}")
            time.sleep(0.01)

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
        except OSError:
            return False
        return True

    def log(self) -> str:
        texts = [p.read_text(errors="replace") for p in self.directory.glob("*.log") if p.exists()]
        return "\n".join(texts)[-4000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: immediate shutdown, server connections closed
            self.process.wait(10)
        if self._out is not None:
            self._out.close()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def dbname(database_url: str) -> str:
    return urlsplit(database_url).path.lstrip("/")


def through(settings: Settings, bouncer: PgBouncer, database_url: str, cache_size: int) -> Settings:
    """``settings`` of a service in transaction mode, as datasvc_app, through ``bouncer``."""
    return settings.with_overrides(
        database_url=bouncer.url(dbname(database_url), APP_ROLE),
        pool_mode="transaction",
        statement_cache_size=cache_size,
    )
