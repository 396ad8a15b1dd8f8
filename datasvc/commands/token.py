"""``datasvc token``: bearer tokens for DATASVC_AUTH_TOKENS, and their sha256 as the service stores them."""

from __future__ import annotations

import argparse
import secrets
import sys

from datasvc.auth import hash_token
from datasvc.settings import Settings


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = sub.add_parser("token", help="bearer tokens for DATASVC_AUTH_TOKENS").add_subparsers(
        required=True, metavar="ACTION"
    )
    token.add_parser("hash", help="read a token on stdin, print its sha256 hex").set_defaults(handler=_hash)
    token.add_parser("new", help="print a fresh random token and its sha256 hex").set_defaults(handler=_new)


def _hash(args: argparse.Namespace, settings: Settings) -> int:
    token = sys.stdin.readline().strip()
    if not token:
        print("datasvc: no token on stdin", file=sys.stderr)
        return 1
    print(hash_token(token))
    return 0


def _new(args: argparse.Namespace, settings: Settings) -> int:
    token = secrets.token_urlsafe(32)
    print(f"token   {token}")
    print(f"sha256  {hash_token(token)}")
    return 0
