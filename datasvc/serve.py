"""`datasvc serve`: everything between the command line and uvicorn.

The embedded database when ``DATABASE_URL`` is unset (started or taken over, migrated, stopped again), the
one listing-cursor secret shared by every worker, signals (SIGTERM, SIGINT and SIGHUP all stop the service
gracefully; SIGTERM and SIGHUP after the drain window of `datasvc.drain`), and the factory each uvicorn
worker calls (which freezes what start-up built out of the garbage collector's way).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import gc
import ipaddress
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import asyncpg
import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from datasvc import logs, migrations
from datasvc.app import create_app
from datasvc.auth import Authenticator
from datasvc.connections import server_settings
from datasvc.embedded import EmbeddedError, EmbeddedPostgres, embedded
from datasvc.registry import Registry
from datasvc.settings import Settings, SettingsError, redact_url
from datasvc.statements import execute

log = logging.getLogger("datasvc.serve")

_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_METRICS_PREFIX = "datasvc-metrics-"


def app_from_env() -> Starlette:
    """The uvicorn factory each worker calls: settings from the environment the parent prepared."""
    if multiprocessing.parent_process() is not None:
        _follow_the_supervisor()
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    app = create_app(settings, take_sigterm=True)
    # What start-up built (modules, classes, pydantic schemas, the registry) lives as long as the process.
    # Frozen, the collector stops walking it, so a full collection, which stalls every request in
    # flight, stays short whatever start-up loaded (p99 and req/s in docs/benchmarks.md).
    gc.collect()
    gc.freeze()
    return app


def _follow_the_supervisor() -> None:
    """In a worker process: the supervisor decides when to stop, and its death stops us."""
    # A closed terminal sends SIGHUP to the whole process group; the supervisor turns it into an orderly
    # stop of every worker, which a worker dying on its own SIGHUP would pre-empt.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if sys.platform == "linux":
        # kill -9 of the supervisor: SIGTERM (a graceful stop) rather than an orphan holding the port.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def serve(settings: Settings) -> int:
    """Check the configuration, find or start the database, then run uvicorn until a signal stops it."""
    logs.configure(settings.log_level)
    registry = Registry.load(settings.sql_dir)  # refuse to start on a bad statement file, before anything
    authenticator = Authenticator.from_settings(settings)  # ... or on a bad token entry
    refuse_open_beyond_loopback(settings, authenticator)  # ... or open to the network, before binding
    if settings.cursor_secret is None:
        # One listing-cursor secret for every worker of this run, so any worker verifies any cursor.
        secret = secrets.token_urlsafe(32)
        settings = settings.with_overrides(cursor_secret=secret)
        os.environ["DATASVC_CURSOR_SECRET"] = secret
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so `finally` runs.
    # SIGHUP (the terminal went away) stops the service the same way.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    signal.signal(signal.SIGHUP, _hangup)
    listener = _bind(settings)  # a port in use: one line and exit 3, before a database is started
    owned: EmbeddedPostgres | None = None
    try:
        if settings.database_url is None:
            pg, owned = _embedded_database(settings)
            applied = migrations.apply(pg.url, settings.migrations_dir, sql_dir=settings.sql_dir)
            # Migrated as the superuser, served as the runtime role: the start-up warning about "more
            # rights than needed" then means what it says, here as in production.
            settings = settings.with_overrides(database_url=pg.app_url)
            os.environ["DATABASE_URL"] = pg.app_url
            log.info(
                "using embedded PostgreSQL",
                extra={
                    "database": pg.app_url,
                    "pgdata": str(pg.pgdata),
                    "postgres": pg.version(),
                    "migrations_applied": applied,
                },
            )
        else:
            log.info("using DATABASE_URL", extra={"database": redact_url(settings.database_url)})
        if settings.pool_mode == "transaction":
            _wait_for_database(settings, registry)
        log.info("starting", extra={"config": settings.redacted()})
        with _metrics_directory(settings.workers):
            _run_uvicorn(settings, listener)
    finally:
        listener.close()
        if owned is not None:
            log.info("stopping embedded PostgreSQL", extra={"pgdata": str(owned.pgdata)})
            owned.stop()
            owned.release_ownership()
    return 0


def _wait_for_database(settings: Settings, registry: Registry) -> None:
    """Transaction mode: wait here, before uvicorn, until the database answers a statement.

    The workers' start-up checks (`datasvc.pooler`) must pass before anything is served, so this mode
    cannot serve readiness 503 meanwhile as session mode does. Waiting here, our handlers are in force:
    SIGTERM and SIGHUP (`_exit_cleanly`) and SIGINT stop the wait at once, where inside uvicorn's
    start-up they would only be noted. The wait is bounded by DATASVC_START_TIMEOUT, then exit 1, so an
    orchestrator sees the cause and restarts with its back-off.
    """
    assert settings.database_url is not None
    url, probe = settings.database_url, registry["session.settings_in_force"]

    async def wait() -> None:
        deadline = time.monotonic() + settings.start_timeout
        announced = False
        while True:
            try:
                conn = await asyncpg.connect(
                    url, timeout=settings.connect_timeout, server_settings=server_settings(settings)
                )
                try:
                    await execute(conn, probe, ())
                finally:
                    await conn.close()
                return
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                if time.monotonic() >= deadline:
                    raise TimeoutError(
                        f"no answer within DATASVC_START_TIMEOUT={settings.start_timeout:g}s "
                        f"(transaction mode checks the database before serving): {type(exc).__name__}"
                    ) from None
                if not announced:
                    log.warning(
                        "transaction mode: waiting for the database before serving (SIGINT or SIGTERM "
                        "stops the wait)",
                        extra={
                            "database": redact_url(url),
                            "error": repr(exc),
                            "start_timeout": settings.start_timeout,
                        },
                    )
                    announced = True
                await asyncio.sleep(1.0)

    asyncio.run(wait())


def refuse_open_beyond_loopback(settings: Settings, authenticator: Authenticator) -> None:
    """No open mode on a network address unless asked for by name (``DATASVC_AUTH=off``).

    On loopback only this machine's users can call, so a first run with no token stays easy; anywhere
    else, open mode would hand every user and password hash to whoever can reach the port.
    """
    if authenticator.enabled or settings.auth == "off" or is_loopback(settings.host):
        return
    raise SettingsError(
        f"refusing to serve on {settings.host!r} with no bearer token configured: anyone who can reach "
        "it could read and change every user and read password hashes. Either configure tokens "
        "(DATASVC_AUTH_TOKENS or DATASVC_AUTH_TOKENS_FILE; `datasvc token new` makes one), or set "
        "DATASVC_AUTH=off to serve without authentication on purpose."
    )


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` only ever listens on loopback (127.0.0.0/8, ::1, or a name only for those)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError):
        return False  # uvicorn could not bind it either; do not call it safe
    addresses = {str(info[4][0]).partition("%")[0] for info in infos}  # "fe80::1%eth0": drop the zone
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def _embedded_database(settings: Settings) -> tuple[EmbeddedPostgres, EmbeddedPostgres | None]:
    """Start the embedded cluster, or take over one left running; the second item is set if we stop it.

    A cluster owned by another live serve is refused: that serve stops it when it exits, which would
    leave this one serving with no database.
    """
    pg = embedded(settings.data_dir, settings.embedded_port)
    other_serve = pg.owner()
    if other_serve is not None and other_serve != os.getpid():
        where = f", port {port}" if (port := pg.owner_port()) else ""
        raise EmbeddedError(
            f"the embedded PostgreSQL under {pg.data_dir} belongs to another datasvc serve (pid "
            f"{other_serve}{where}), which stops it when it exits: use that one, stop it first, or set "
            "DATASVC_DATA_DIR (another cluster) or DATABASE_URL"
        )
    pg, started = pg.start()
    if started:
        pg.take_ownership(settings.port)
        return pg, pg
    found = pg.running()
    log.warning(
        "embedded PostgreSQL was already running (left by a serve that did not stop it, or by a datasvc "
        "command): this serve takes it over and stops it at exit",
        extra={"postgres_pid": found.pid if found else None, "database": pg.url},
    )
    pg.take_ownership(settings.port)
    return pg, pg


@contextlib.contextmanager
def _metrics_directory(workers: int) -> Iterator[None]:
    """With several workers: a fresh PROMETHEUS_MULTIPROC_DIR for this run, so /metrics reports them all."""
    if workers <= 1:
        yield
        return
    # Set before the workers start: prometheus-client reads it once, when a worker imports it. Left
    # from another run, the files would add its counts to ours: always a new directory, named after this
    # process so that a later run can sweep the ones whose serve was killed (-9) before removing its own.
    _sweep_metrics_directories()
    path = tempfile.mkdtemp(prefix=f"{_METRICS_PREFIX}{os.getpid()}-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    log.info("metrics of every worker kept in PROMETHEUS_MULTIPROC_DIR", extra={"path": path})
    try:
        yield
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _sweep_metrics_directories() -> None:
    for found in Path(tempfile.gettempdir()).glob(f"{_METRICS_PREFIX}*-*"):
        pid = found.name.removeprefix(_METRICS_PREFIX).partition("-")[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(found, ignore_errors=True)
        except PermissionError:  # another user's serve, alive
            pass


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _hangup(signum: int, frame: FrameType | None) -> None:
    # Whoever handles SIGTERM right now (the drain window, uvicorn's graceful shutdown, `_exit_cleanly`)
    # handles this too, called with SIGHUP so that it logs the signal that came.
    handler = signal.getsignal(signal.SIGTERM)
    if callable(handler):
        handler(signum, frame)
    else:
        signal.raise_signal(signal.SIGTERM)


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP stops it rather than restarting the workers."""

    def handle_hup(self) -> None:
        log.info("SIGHUP: stopping the workers (each drains as on SIGTERM)")
        self.handle_term()


class PortInUse(Exception):
    """The address `datasvc serve` should listen on is taken (exit 3)."""


def _bind(settings: Settings) -> socket.socket:
    """Bind the listening socket now (uvicorn listens on it later); as uvicorn's own `bind_socket`."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUse(
                f"{settings.host}:{settings.port} is already in use (another datasvc serve? "
                f"`ss -ltnp 'sport = :{settings.port}'` names its process); set DATASVC_PORT or --port"
            ) from None
        raise
    sock.set_inheritable(True)  # the workers of --workers N share it
    return sock


def _run_uvicorn(settings: Settings, listener: socket.socket) -> None:
    config = uvicorn.Config(
        "datasvc.serve:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        loop="uvloop",
        http="datasvc.protocol:HeadLimitedHttpToolsProtocol",  # httptools, with a bounded request head
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_timeout),
        server_header=False,
    )
    if config.workers > 1:
        _Supervisor(config, sockets=[listener]).run()
        return
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[listener])
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT once it has shut down gracefully
        return
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE: e.g. the port is taken (it logged why)
