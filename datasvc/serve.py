"""`datasvc serve`: everything between the command line and uvicorn.

The embedded database when ``DATABASE_URL`` is unset (started, migrated, stopped again), the one
listing-cursor secret shared by every worker, signals turned into a clean exit, and the factory each
uvicorn worker calls (which freezes what start-up built out of the garbage collector's way).
"""

from __future__ import annotations

import gc
import ipaddress
import logging
import os
import secrets
import signal
import socket

import uvicorn
from starlette.applications import Starlette

from datasvc import logs, migrations
from datasvc.app import create_app
from datasvc.auth import Authenticator
from datasvc.embedded import EmbeddedPostgres, embedded
from datasvc.registry import Registry
from datasvc.settings import Settings, SettingsError, redact_url

log = logging.getLogger("datasvc.serve")


def app_from_env() -> Starlette:
    """The uvicorn factory each worker calls: settings from the environment the parent prepared."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    app = create_app(settings)
    # What start-up built (modules, classes, pydantic schemas, the registry: ~60k objects) lives as long
    # as the process. Frozen, the collector stops walking it: a full collection, which stalls every
    # request in flight, drops from ~20 ms to under 1 ms (p99 and req/s in docs/benchmarks.md).
    gc.collect()
    gc.freeze()
    return app


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
    started_here: EmbeddedPostgres | None = None
    if settings.database_url is None:
        pg = embedded(settings.data_dir, settings.embedded_port)
        if pg.ensure_running():
            started_here = pg
        settings = settings.with_overrides(database_url=pg.url)
        os.environ["DATABASE_URL"] = pg.url
        applied = migrations.apply(pg.url, settings.migrations_dir, sql_dir=settings.sql_dir)
        log.info(
            "using embedded PostgreSQL",
            extra={"database": pg.url, "pgdata": str(pg.pgdata), "migrations_applied": applied},
        )
    else:
        log.info("using DATABASE_URL", extra={"database": redact_url(settings.database_url)})
    log.info("starting", extra={"config": settings.redacted()})
    # uvicorn re-raises SIGTERM after its graceful shutdown; turn it into SystemExit so `finally` runs.
    signal.signal(signal.SIGTERM, _exit_cleanly)
    try:
        _run_uvicorn(settings)
    finally:
        if started_here is not None:
            log.info("stopping embedded PostgreSQL", extra={"pgdata": str(started_here.pgdata)})
            started_here.stop()
    return 0


def refuse_open_beyond_loopback(settings: Settings, authenticator: Authenticator) -> None:
    """No open mode on a network address unless asked for by name (``DATASVC_AUTH=off``).

    On loopback only this machine's users can call, so a first run with no token stays easy; anywhere
    else, open mode would hand every user and password hash to whoever can reach the port.
    """
    if authenticator.enabled or not settings.auth or is_loopback(settings.host):
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


def _exit_cleanly(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _run_uvicorn(settings: Settings) -> None:
    uvicorn.run(
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
