"""The OpenAPI 3.1 document, generated from the operations and their pydantic models."""

from __future__ import annotations

import http
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from datasvc.consistency import HEADER as CONSISTENCY
from datasvc.responses import PROBLEM_MEDIA_TYPE
from datasvc.routing import Operation, Param

REF = "#/components/schemas/{model}"

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "Stable identifier of the problem kind."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "request_id": {"type": "string"},
        "field": {"type": "string", "description": "On 409: the field whose value is taken."},
        "errors": {
            "type": "array",
            "description": "On 422: every offending field and why.",
            "items": {
                "type": "object",
                "required": ["field", "reason"],
                "properties": {"field": {"type": "string"}, "reason": {"type": "string"}},
            },
        },
    },
}

CONSISTENCY_PARAM = Param(
    name=CONSISTENCY,
    location="header",
    description=(
        f"The {CONSISTENCY} of your last write: the answer then includes that write (a replica serves it "
        "only once it has replayed it; else the primary). A value that is not such a token sends the "
        "read to the primary."
    ),
    schema={"type": "string"},
)
CONSISTENCY_RESPONSE = (
    "Opaque token of this write; send it back on reads (same header) to be sure to see it, whichever "
    "replica answers."
)

# Every operation can meet these, whatever its own errors are (431: the request head bound, below the app).
COMMON_ERRORS = (431, 500, 503, 504)


def build(
    operations: Sequence[Operation],
    *,
    extra_models: Sequence[type[BaseModel]] = (),
    title: str = "datasvc",
    version: str = "0.1.0",
    secured: bool = False,
    caller_limit: bool = False,
) -> dict[str, Any]:
    """The document; ``secured`` (bearer tokens configured) adds each operation's security and 401/403,
    ``caller_limit`` (DATASVC_CALLER_MAX_IN_FLIGHT) the 429 of a caller past its share."""
    models: list[type[BaseModel]] = list(extra_models)
    for op in operations:
        models += [m for m in (op.request_model, op.response_model) if m is not None]
    unique = list(dict.fromkeys(models))
    _, defs = models_json_schema([(m, "validation") for m in unique], ref_template=REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Problem"] = PROBLEM_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        for path in (op.path, *op.aliases):
            paths.setdefault(path, {})[op.method.lower()] = _operation(
                op, path != op.path, secured, caller_limit
            )
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The users data service: every statement is a reviewed SQL file.",
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(op: Operation, alias: bool, secured: bool, caller_limit: bool) -> dict[str, Any]:
    guarded = secured and op.scope is not None
    out: dict[str, Any] = {
        "operationId": op.operation_id + ("Slash" if alias else ""),
        "summary": op.summary,
        "tags": [op.tag],
        "responses": _responses(op, ((401, 403, 429) if caller_limit else (401, 403)) if guarded else ()),
    }
    if secured:
        # OpenAPI 3.1 lets a non-OAuth scheme list the roles it needs: here, the token's scope.
        out["security"] = [{"bearer": [op.scope]}] if op.scope is not None else []
    params = [*op.params, CONSISTENCY_PARAM] if op.consistency == "read" else list(op.params)
    if params:
        out["parameters"] = [
            {
                "name": p.name,
                "in": p.location,
                "required": p.required or p.location == "path",
                "description": p.description,
                "schema": p.schema,
            }
            for p in params
        ]
    if op.request_model is not None:
        out["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model=op.request_model.__name__)}}
            },
        }
    return out


def _responses(op: Operation, auth_errors: Sequence[int]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": http.HTTPStatus(op.status).phrase}
    if op.response_model is not None:
        ok["content"] = {
            "application/json": {"schema": {"$ref": REF.format(model=op.response_model.__name__)}}
        }
    headers = dict(op.response_headers)
    if op.consistency == "write":
        headers[CONSISTENCY] = CONSISTENCY_RESPONSE
    if headers:
        ok["headers"] = {k: {"description": v, "schema": {"type": "string"}} for k, v in headers.items()}
    responses: dict[str, Any] = {str(op.status): ok}
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for status in sorted({*op.errors, *auth_errors, *COMMON_ERRORS}):
        # A 3xx (304 Not Modified) has no body; every 4xx/5xx is a problem.
        described: dict[str, Any] = {"description": http.HTTPStatus(status).phrase}
        if status >= 400:
            described["content"] = problem
        responses[str(status)] = described
    return responses
