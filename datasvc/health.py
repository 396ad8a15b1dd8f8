"""Liveness (``/health``, no database) and readiness (``/health/ready``: database answers, schema current)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from datasvc.errors import DatasvcError, ServiceUnavailable, translate
from datasvc.responses import JSONResponse


async def live(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def ready(request: Request) -> Response:
    db = request.state.db
    expected: list[str] = request.state.migration_ids
    try:
        rows = await db.fetch("health.applied_migrations")
    except Exception as exc:  # any failure means not ready; say which kind without driver text
        problem = translate(exc)
        if problem.slug == "schema-missing":
            raise ServiceUnavailable("no migrations are applied", slug="not-migrated") from None
        if isinstance(problem, DatasvcError) and problem.status >= 500:
            raise ServiceUnavailable("the database does not answer", slug="database-unavailable") from None
        raise
    applied = {r["migration_id"] for r in rows}
    pending = [m for m in expected if m not in applied]
    if pending:
        raise ServiceUnavailable(f"migrations not applied: {', '.join(pending)}", slug="not-migrated")
    return JSONResponse({"status": "ready", "migrations": len(expected)})
