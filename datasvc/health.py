"""Liveness (``/health``, no database) and readiness (``/health/ready``: not draining, database answers,
schema current; each replica's state: in rotation or not, lag, why out)."""

from __future__ import annotations

from typing import Literal

import asyncpg
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import Response

from datasvc.dberrors import translate
from datasvc.drain import Drain
from datasvc.errors import DatabaseUnavailable, NotMigrated, SchemaMissing, ServerError, ShuttingDown
from datasvc.migrations import compare
from datasvc.responses import JSONResponse


class Live(BaseModel):
    """``/health``: the process answers."""

    status: Literal["ok"]


class Drift(BaseModel):
    """Migrations whose record differs from the shipped files; reported, never failed on."""

    changed: list[str] = Field(description="Applied, but the file differs from what was applied.")
    unknown: list[str] = Field(description="Applied in the database, not shipped by this code.")
    unrecorded: list[str] = Field(description="Applied without datasvc: no hash to compare.")


class Ready(BaseModel):
    """``/health/ready``: the database answers and every shipped migration is applied."""

    status: Literal["ready"]
    migrations: int = Field(description="Migrations shipped (and applied).")
    drift: Drift


async def live(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    drain: Drain | None = request.scope["state"].get("drain")
    if drain is not None and drain.draining:
        # First thing on SIGTERM: a load balancer checking this takes the instance out of rotation.
        raise ShuttingDown("draining connections before stopping (SIGTERM)")
    db = request.scope["state"]["db"]
    expected: list[str] = request.scope["state"]["migration_ids"]
    try:
        rows = await db.run("health.applied_migrations")
    except Exception as exc:  # any failure means not ready; say which kind without driver text
        problem = translate(exc)
        if isinstance(problem, SchemaMissing):
            raise NotMigrated("no migrations are applied") from None
        if isinstance(problem, DatabaseUnavailable):
            raise problem from None  # its detail says why: unreachable, no such database, bad password…
        if isinstance(problem, ServerError):
            why = problem.detail or problem.title
            raise DatabaseUnavailable(f"the database does not answer: {why}") from None
        raise
    applied = {r["migration_id"] for r in rows}
    pending = [m for m in expected if m not in applied]
    if pending:
        raise NotMigrated(f"migrations not applied: {', '.join(pending)}")
    # Drift is reported, not failed on: during a rolling deploy the old pods see the new migrations as
    # unknown, and taking them out of service before the new ones are up would be an outage.
    try:
        recorded: dict[str, str] | None = dict(await db.run("migrate.file_hashes"))
    except asyncpg.UndefinedTableError:  # migrated without datasvc: nothing to compare with
        recorded = None
    state = compare(request.scope["state"]["migration_hashes"], [r["migration_id"] for r in rows], recorded)
    drift = {"changed": state.changed, "unknown": state.unknown, "unrecorded": state.unrecorded}
    body: dict[str, object] = {"status": "ready", "migrations": len(expected), "drift": drift}
    if db.replicas:
        # Reported, never failed on: reads go to the primary while no replica is fit for them.
        body["replicas"] = [replica.status() for replica in db.replicas.replicas]
    return JSONResponse(body)
