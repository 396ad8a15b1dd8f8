"""``datasvc migrate``: apply, roll back (guarded) or list the migrations (`datasvc.migrations` does them)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from datasvc import migrations
from datasvc.commands.db import database_url
from datasvc.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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


def _rollback_count(raw: str) -> int:
    if not raw.isdigit():
        raise argparse.ArgumentTypeError(
            f"{raw!r}: N must be a whole number of migrations, 1 or more (0: all of them)"
        )
    return int(raw)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    url = database_url(settings)
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
