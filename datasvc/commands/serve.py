"""``datasvc serve``: the HTTP API, with the command line's --host, --port and --workers over the settings."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from datasvc.envvalues import port, positive_int
from datasvc.serve import serve
from datasvc.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("serve", help="serve the HTTP API (embedded PostgreSQL if DATABASE_URL is unset)")
    parser.add_argument("--host", help="address to bind (default: DATASVC_HOST, else 127.0.0.1)")
    parser.add_argument(
        "--port", type=_checked(port), help="port to bind, 1-65535 (default: DATASVC_PORT, else 8000)"
    )
    parser.add_argument(
        "--workers",
        type=_checked(positive_int),
        help="worker processes sharing the port, each with its own pool (default: DATASVC_WORKERS, else 1)",
    )
    parser.set_defaults(handler=_serve)


def _checked(parse: Callable[[str], int]) -> Callable[[str], int]:
    """A settings parser as an argparse type: its reason in the usage error (exit 2)."""

    def checked(raw: str) -> int:
        try:
            return parse(raw)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{raw!r} {exc}") from None

    return checked


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    overrides = {k: v for k in ("host", "port", "workers") if (v := getattr(args, k)) is not None}
    return serve(settings.with_overrides(**overrides))
