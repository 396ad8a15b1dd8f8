"""``datasvc sql``: the statement registry read from the command line, and checked against a database."""

from __future__ import annotations

import argparse
import asyncio
import sys

import asyncpg

from datasvc import schema
from datasvc.commands.db import database_url
from datasvc.connections import server_settings
from datasvc.explain import ExplainError, Report, report
from datasvc.registry import Registry
from datasvc.settings import Settings, redact_url
from datasvc.statements import check_statements


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sql = sub.add_parser("sql", help="inspect the SQL registry").add_subparsers(
        required=True, metavar="ACTION"
    )
    listing = sql.add_parser(
        "list", help="every statement, one line each: name, kind, route, parameters; internal ones last"
    )
    listing.add_argument("--verbose", "-v", action="store_true", help="add file:line and the description")
    listing.set_defaults(handler=_list)
    show = sql.add_parser("show", help="one statement in full, as sent")
    show.add_argument("name")
    show.set_defaults(handler=_show)
    sql.add_parser("check", help="prepare every statement against the database").set_defaults(handler=_check)
    sql.add_parser(
        "schema", help="the database's schema as pg_dump --schema-only prints it, stable (sql/schema.sql)"
    ).set_defaults(handler=_schema)
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
    plan.set_defaults(handler=_explain)


# Statements the service runs for itself (migrations, session set-up and checks, replica lag, `sql
# explain`), listed apart from those that answer requests.
INTERNAL_NAMESPACES = ("migrate", "session", "replica", "explain")


def _list(args: argparse.Namespace, settings: Settings) -> int:
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


def _show(args: argparse.Namespace, settings: Settings) -> int:
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


def _check(args: argparse.Namespace, settings: Settings) -> int:
    url = database_url(settings)
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


def _explain(args: argparse.Namespace, settings: Settings) -> int:
    url = database_url(settings)
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


def _schema(args: argparse.Namespace, settings: Settings) -> int:
    print(schema.dump(database_url(settings)), end="")
    return 0
