"""The OpenAPI 3.1 document, generated from the operations and their pydantic models.

The document is the same whatever the configuration: a client generated from an instance running open
(no tokens, on loopback) must still understand the 401, 403 and 429 of one that has tokens, so every
guarded operation always declares its security and those statuses. Every header and status the service
can send is declared, including those answered below the app (400 and 431 from the HTTP protocol, 413 from
the body cap, 503 from load shedding). Aliases (`Operation.aliases`) are served but not listed: a
generated client gets one method per operation.
"""

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
_WAIT = (
    "`wait=N`: answer within N seconds of arrival (decimals allowed; at most DATASVC_STATEMENT_TIMEOUT), "
    "else 504 `deadline-exceeded`, the statement cancelled."
)
_MINIMAL = "`return=minimal`: answer {status} with the headers and no body."


def prefer_param(minimal: int | None) -> Param:
    """RFC 7240 ``Prefer``, as an operation honours it; unknown preferences are ignored."""
    described = _WAIT + (" " + _MINIMAL.format(status=minimal) if minimal else "")
    return Param(name="Prefer", location="header", description=described, schema={"type": "string"})


PREFERENCE_APPLIED = "The preferences of `Prefer` this answer honoured (`wait=N`, `return=minimal`)."
CONSISTENCY_RESPONSE = (
    "Opaque token of this write; send it back on reads (same header) to be sure to see it, whichever "
    "replica answers."
)

# Every operation can meet these, whatever its own errors are: 400 and 431 from the HTTP protocol (a head
# it cannot parse, or too large), 413 from the body cap (any method may send a body), 500, 503 (shedding,
# the database) and 504.
COMMON_ERRORS = (400, 413, 431, 500, 503, 504)
# A guarded operation (one with a scope) can also meet these: no or a bad token, a missing scope, and the
# caller's fair share (datasvc.limits). Declared whether or not tokens are configured.
GUARD_ERRORS = (401, 403, 429)

# Every tag an operation uses is declared once, in this order, with what its operations are for.
TAGS = {
    "users": "The user accounts: create, read, change, delete, list, export, follow changes.",
    "auth": "For an authentication service: stored credentials, behind their own scope.",
    "health": "Liveness and readiness probes, for orchestrators and load balancers.",
    "ops": "Operating the service: metrics.",
}

# Response headers, declared once under components/headers.
HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-ID": {
        "description": "The caller's X-Request-ID if it sent a safe one, else a new id; also in the "
        "access log and in a problem's `request_id`.",
        "required": True,
        "schema": {"type": "string", "minLength": 1, "maxLength": 128},
    },
    "Server-Timing": {
        "description": "`db;dur=<ms>`: time spent in the database for this request.",
        "schema": {"type": "string"},
    },
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    # A 409 carries Retry-After only when the conflict passes (an Idempotency-Key still in flight), not
    # when the value is taken for good.
    "Retry-After-If-Transient": {
        "description": "On `idempotency-key-in-flight` only: seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 0},
    },
    "WWW-Authenticate": {
        "description": 'The scheme to use: `Bearer`, or `Bearer error="invalid_token"`.',
        "required": True,
        "schema": {"type": "string"},
    },
}
_ON_EVERY_RESPONSE = ("X-Request-ID", "Server-Timing")
_ON_STATUS = {
    401: ("WWW-Authenticate",),
    409: ("Retry-After-If-Transient",),
    429: ("Retry-After",),
    503: ("Retry-After",),
    504: ("Retry-After",),
}


def build(
    operations: Sequence[Operation],
    *,
    extra_models: Sequence[type[BaseModel]] = (),
    title: str = "datasvc",
    version: str = "0.1.0",
) -> dict[str, Any]:
    """The document of ``operations``; it depends on nothing else (no setting, no environment)."""
    models: list[type[BaseModel]] = list(extra_models)
    for op in operations:
        models += [m for m in (op.request_model, op.response_model) if m is not None]
    unique = list(dict.fromkeys(models))
    _, defs = models_json_schema([(m, "validation") for m in unique], ref_template=REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    schemas["Problem"] = PROBLEM_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    used = list(dict.fromkeys(op.tag for op in operations))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "The users data service: every statement is a reviewed SQL file. Operations "
            "with a security requirement need a bearer token holding the scope named, unless the "
            "instance runs open (no token configured: development only).",
            "contact": {"name": "the datasvc maintainers"},
        },
        # Where an instance listens is the deployment's choice: the document's own origin (a relative
        # URL), so the /docs page and generated clients call the instance that served it, whatever its
        # host and port; the paths are absolute (/api/v1/..., /health).
        "servers": [{"url": "/", "description": "The instance that serves this document"}],
        "tags": [{"name": tag, "description": TAGS.get(tag, tag)} for tag in used],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "headers": HEADERS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _operation(op: Operation) -> dict[str, Any]:
    out: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "description": op.description,
        "tags": [op.tag],
        # OpenAPI 3.1 lets a non-OAuth scheme list the roles it needs: here, the token's scope.
        "security": [{"bearer": [op.scope]}] if op.scope is not None else [],
        "responses": _responses(op),
    }
    params = [*op.params, CONSISTENCY_PARAM] if op.consistency == "read" else list(op.params)
    if op.consistency is not None:  # the users API: every operation that runs statements for a caller
        params.append(prefer_param(op.minimal))
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


def _headers(status: int, own: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {
        name.removesuffix("-If-Transient"): {"$ref": f"#/components/headers/{name}"}
        for name in (*_ON_EVERY_RESPONSE, *_ON_STATUS.get(status, ()))
    }
    for name, description in own.items():
        out[name] = {"description": description, "schema": {"type": "string"}}
    return out


def _responses(op: Operation) -> dict[str, Any]:
    own = dict(op.response_headers)
    if op.consistency == "write":
        own[CONSISTENCY] = CONSISTENCY_RESPONSE
    if op.consistency is not None:
        own["Preference-Applied"] = PREFERENCE_APPLIED
    ok: dict[str, Any] = {
        "description": http.HTTPStatus(op.status).phrase,
        "headers": _headers(op.status, own),
    }
    if op.response_model is not None:
        ok["content"] = {op.media_type: {"schema": {"$ref": REF.format(model=op.response_model.__name__)}}}
    elif op.media_type != "application/json":
        ok["content"] = {op.media_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {str(op.status): ok}
    if op.minimal is not None and op.minimal != op.status:
        # The minimal answer of a write whose full answer has another status (PATCH: 204, not 200).
        phrase = http.HTTPStatus(op.minimal).phrase
        responses[str(op.minimal)] = {
            "description": f"{phrase} (Prefer: return=minimal)",
            "headers": ok["headers"],
        }
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    guard = GUARD_ERRORS if op.scope is not None else ()
    for status in sorted({*op.errors, *guard, *COMMON_ERRORS}):
        described: dict[str, Any] = {"description": http.HTTPStatus(status).phrase}
        if status == 304:
            # Not Modified has no body, and names the current version like the 200 it stands for.
            described["headers"] = _headers(
                status, {k: v for k, v in op.response_headers.items() if k == "ETag"}
            )
        else:
            described["headers"] = _headers(status, {})
            described["content"] = problem
        responses[str(status)] = described
    return responses
