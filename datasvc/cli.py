"""The ``datasvc`` command: the top-level parser, and what each failure means as an exit code.

Each group of subcommands (`datasvc.commands`: serve, db, migrate, token, sql) adds its own parser and
runs its actions by calling one module; here they are assembled, and what they raise becomes one line on
stderr and an exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from importlib import metadata

import asyncpg
import psycopg

from datasvc import migrations, schema
from datasvc.commands import db, migrate, serve, sql, token
from datasvc.embedded import EmbeddedError
from datasvc.serve import PortInUse
from datasvc.settings import Settings, SettingsError, redact_url
from datasvc.sqlfiles import RegistryError

# What a command that talks to the database may meet when it cannot (refused, unknown host, timeout, a
# login or SQL error): one line naming the cause, exit 1, never a traceback.
_DATABASE_ERRORS = (psycopg.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done; 1 refused or failed (the database cannot be reached, a statement failed);
    2 usage or configuration error, nothing done; 3 `db status` of a stopped cluster, or `serve` could
    not listen (the port is taken); 130 interrupted."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "passthrough", False):  # `db psql -c ...`: psql's own options
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.args = extra
    url: str | None = None
    try:
        settings = Settings.from_env()
        url = settings.database_url
        result: int = args.handler(args, settings)
        return result
    except (
        SettingsError,
        RegistryError,
        EmbeddedError,
        migrations.MigrationLockTimeout,
        schema.SchemaError,
    ) as exc:
        for line in str(exc).splitlines():  # a configuration may have several problems: each on its line
            print(f"datasvc: {line}", file=sys.stderr)
        return 2
    except migrations.RollbackRefused as exc:
        print(f"datasvc: {exc}", file=sys.stderr)
        return 1
    except PortInUse as exc:
        print(f"datasvc: {exc}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        # `datasvc sql list | head -1`: the reader has what it wanted. Point stdout at /dev/null so the
        # interpreter's last flush does not fail again on the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        return 130
    except _DATABASE_ERRORS as exc:
        print(f"datasvc: {_database_problem(exc, url)}", file=sys.stderr)
        return 1


def _database_problem(exc: BaseException, url: str | None) -> str:
    """One line: which database, and the first line of what the driver said."""
    where = f" ({redact_url(url)})" if url else " (the embedded PostgreSQL)"
    said = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
    if isinstance(exc, OSError) and (exc.errno or 0) > 0:  # "Connection refused", not "[Errno 111] …"
        said = os.strerror(exc.errno or 0)
    elif isinstance(exc, OSError) and exc.strerror:  # a resolver's "Name or service not known"
        said = exc.strerror
    if isinstance(exc, (psycopg.OperationalError, OSError, TimeoutError, asyncpg.InterfaceError)):
        return f"the database cannot be reached{where}: {said}"
    state = getattr(exc, "sqlstate", None)
    return f"the database refused{where}: {state + ': ' if state else ''}{said}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datasvc", description="The users data service.")
    parser.add_argument("--version", action="version", version=f"datasvc {metadata.version('datasvc')}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in (serve, db, migrate, token, sql):
        group.add_parser(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
