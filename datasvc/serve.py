"""`datasvc serve`: everything between the command line and uvicorn.

The embedded database when ``DATABASE_URL`` is unset (started or taken over, migrated, stopped again), the
one listing-cursor secret shared by every worker, signals (SIGTERM, SIGINT and SIGHUP all stop the service
gracefully; SIGTERM and SIGHUP after the drain window of `datasvc.drain`), and the factory each uvicorn
worker calls (which freezes what start-up built out of the garbage collector's way).
"""

from __future__ import annotations

import contextlib
import ctypes
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
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from uvicorn.supervisors import Multiprocess

from datasvc import logs, migrations
from datasvc.app import create_app
from datasvc.auth import Authenticator
from datasvc.embedded import EmbeddedPostgres, embedded
from datasvc.registry import Registry
from datasvc.settings import Settings, SettingsError, redact_url

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
    Registry.load(settings.sql_dir)  # refuse to start on a bad statement file, before anything else
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
    owned: EmbeddedPostgres | None = None
    try:
        if settings.database_url is None:
            pg, owned = _embedded_database(settings)
            settings = settings.with_overrides(database_url=pg.url)
            os.environ["DATABASE_URL"] = pg.url
            applied = migrations.apply(pg.url, settings.migrations_dir, sql_dir=settings.sql_dir)
            log.info(
                "using embedded PostgreSQL",
                extra={
                    "database": pg.url,
                    "pgdata": str(pg.pgdata),
                    "postgres": pg.version(),
                    "migrations_applied": applied,
                },
            )
        else:
            log.info("using DATABASE_URL", extra={"database": redact_url(settings.database_url)})
        log.info("starting", extra={"config": settings.redacted()})
        with _metrics_directory(settings.workers):
            _run_uvicorn(settings)
    finally:
        if owned is not None:
            log.info("stopping embedded PostgreSQL", extra={"pgdata": str(owned.pgdata)})
            owned.stop()
            owned.release_ownership()
    return 0


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
    """Start the embedded cluster, or take over one left running; the second item is set if we stop it."""
    pg = embedded(settings.data_dir, settings.embedded_port)
    other_serve = pg.owner()
    pg, started = pg.start()
    if started:
        pg.take_ownership()
        return pg, pg
    found = pg.running()
    pid = found.pid if found else None
    if other_serve is not None and other_serve != os.getpid():
        log.warning(
            "embedded PostgreSQL is already running for another datasvc serve, which stops it at exit",
            extra={"postgres_pid": pid, "serve_pid": other_serve, "database": pg.url},
        )
        return pg, None
    log.warning(
        "embedded PostgreSQL was already running (left by a serve that did not stop it, or by a datasvc "
        "command): this serve takes it over and stops it at exit",
        extra={"postgres_pid": pid, "database": pg.url},
    )
    pg.take_ownership()
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


def _hangup(signum: int, frame: object) -> None:
    # Whoever handles SIGTERM right now (uvicorn's graceful shutdown, or `_exit_cleanly`) handles this too.
    signal.raise_signal(signal.SIGTERM)


class _Supervisor(Multiprocess):
    """uvicorn's worker supervisor, except that SIGHUP stops it rather than restarting the workers."""

    def handle_hup(self) -> None:
        self.handle_term()


def _run_uvicorn(settings: Settings) -> None:
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
        _Supervisor(config, sockets=[config.bind_socket()]).run()
        return
    server = uvicorn.Server(config)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn re-raises SIGINT once it has shut down gracefully
        return
    if not server.started:
        raise SystemExit(3)  # uvicorn's STARTUP_FAILURE: e.g. the port is taken (it logged why)
