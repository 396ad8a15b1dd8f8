"""The ceiling: the least a Python service can do to answer our three lookups.

A copy of ../shared/bench/ceiling/app.py (Starlette + asyncpg + orjson; no validation, logging, error
handling or middleware), with GET by username and by email added and the SQL taken from our registry, so
the only difference from datasvc is the features. Started by ``python -m bench`` as
``uvicorn bench.ceiling:app --loop uvloop --http httptools`` with DATABASE_URL set.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from datasvc.registry import Registry
from datasvc.settings import PROJECT_ROOT

_REGISTRY = Registry.load(PROJECT_ROOT / "sql")
BY_ID = _REGISTRY["users.get_by_id"].text
BY_USERNAME = _REGISTRY["users.get_by_username"].text
BY_EMAIL = _REGISTRY["users.get_by_email"].text


async def _one(request: Request, sql: str, arg: Any) -> Response:
    async with request.state.pool.acquire(timeout=5) as con:
        row = await con.fetchrow(sql, arg)
    if row is None:
        return Response(b'{"status":404}', 404, media_type="application/problem+json")
    return Response(orjson.dumps(dict(row)), media_type="application/json")


async def get_user(request: Request) -> Response:
    return await _one(request, BY_ID, request.path_params["id"])


async def get_user_by_username(request: Request) -> Response:
    return await _one(request, BY_USERNAME, request.path_params["username"])


async def get_user_by_email(request: Request) -> Response:
    return await _one(request, BY_EMAIL, request.path_params["email"])


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=10, max_size=10)
    yield {"pool": pool}
    await pool.close()


app = Starlette(
    routes=[
        Route("/api/v1/users/{id:int}", get_user),
        Route("/api/v1/users/by_username/{username}", get_user_by_username),
        Route("/api/v1/users/by_email/{email}", get_user_by_email),
    ],
    lifespan=lifespan,
)
