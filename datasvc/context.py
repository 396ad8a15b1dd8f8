"""What the current request carries across layers: its database timing and trace, its caller, its token.

The middleware sets `request_timing`, auth sets `request_caller`, the router sets `request_min_lsn` from
``X-Consistency-Token``, and the database layer reads them. They
live here, not in ``db.py``, so that neither the middleware nor auth has to import the database module.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from starlette.types import Scope


class StatementTrace(Protocol):
    """One statement's span, as the database layer sees it (`datasvc.tracing.StatementSpan`)."""

    def sql(self, text: str) -> str: ...
    def failed(self, exc: BaseException) -> None: ...
    def end(self) -> None: ...


class RequestTrace(Protocol):
    """A traced request, as the layers below the wire see it (`datasvc.tracing.RequestTrace`)."""

    sampled: bool

    def ids(self) -> tuple[str, str]: ...
    def statement(self, name: str, target: str) -> StatementTrace: ...
    def waited(self, seconds: float, target: str) -> None: ...
    def end(self, scope: Scope, status: int, caller: str | None) -> None: ...


@dataclass(slots=True)
class Timing:
    """Database time of one request, in seconds, how many statements it ran, and its trace if traced."""

    db_seconds: float = 0.0
    statements: int = 0
    # Set by the middleware when tracing is configured (datasvc.tracing); None costs the hooks one test.
    trace: RequestTrace | None = None


request_timing: ContextVar[Timing | None] = ContextVar("request_timing", default=None)
# The authenticated caller of the current request (None when auth is off), named to the database on acquire.
request_caller: ContextVar[str | None] = ContextVar("request_caller", default=None)
# The WAL position a replica must have replayed to answer this request's reads (X-Consistency-Token);
# `UNREACHABLE` for a token we did not issue: past any WAL position, so only the primary answers.
UNREACHABLE = 1 << 64
request_min_lsn: ContextVar[int | None] = ContextVar("request_min_lsn", default=None)
