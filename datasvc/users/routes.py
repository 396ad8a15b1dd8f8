"""Thin handlers for /api/v1/users and /api/v1/auth: validate, run one named statement, answer.

Records go straight from asyncpg to orjson: the SQL's column list is the response shape, and the
pydantic `User` model documents it without being built per request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from datasvc import conditional, idempotency, preferences
from datasvc.errors import NotFound, PreconditionFailed, ValidationFailed
from datasvc.inputs import NO_NUL_PATTERN, nfc, path_id, path_text, read_json
from datasvc.responses import JSONResponse
from datasvc.routing import Operation, Param
from datasvc.users.models import AuthLookup, Credentials, User, UserCreate, UserPatch

if TYPE_CHECKING:
    from starlette.requests import Request

    from datasvc.db import Database

PREFIX = "/api/v1/users"


def _db(request: Request) -> Database:
    db: Database = request.scope["state"]["db"]
    return db


def _user_or_404(request: Request, row: Any, what: str) -> Response:
    """The user with its ``ETag``; 304 to a GET whose ``If-None-Match`` names the current version."""
    if row is None or row["id"] is None:
        raise NotFound(f"no user with {what}")
    user = dict(row)
    tag = conditional.etag(user.pop("version"))
    user.pop("changed", None)
    if request.method in {"GET", "HEAD"} and conditional.not_modified(request, tag):
        return Response(status_code=304, headers={"ETag": tag})
    return JSONResponse(user, headers={"ETag": tag})


def _changed() -> PreconditionFailed:
    return PreconditionFailed("the user changed since the version named in If-Match; fetch it again")


def _ttl(request: Request) -> float:
    ttl: float = request.scope["state"]["settings"].idempotency_ttl
    return ttl


async def create_user(request: Request) -> Response:
    body = await read_json(request, UserCreate)
    args = (body.email, body.username, body.hashed_password, body.full_name, body.bio)
    key = await idempotency.read(request)
    if key is None:
        return _created(request, dict(await _db(request).run("users.create", *args)))
    row, recorded = await idempotency.run(_db(request), "users.create_keyed", args, key, _ttl(request))
    if recorded is not None:
        return idempotency.replayed(_created(request, idempotency.user_from_record(recorded.answer)))
    return _created(request, idempotency.user_from_record(row["answer"]))


def _created(request: Request, user: dict[str, Any]) -> Response:
    headers = {"Location": f"{PREFIX}/{user['id']}", "ETag": conditional.etag(user.pop("version"))}
    if preferences.minimal(request):
        return _minimal(201, headers)
    return JSONResponse(user, status_code=201, headers=headers)


def _minimal(status: int, headers: dict[str, str]) -> Response:
    """``Prefer: return=minimal``: the status and headers of a write, no representation."""
    return Response(status_code=status, headers={**headers, preferences.APPLIED: "return=minimal"})


async def get_user(request: Request) -> Response:
    user_id = path_id(request)
    return _user_or_404(request, await _db(request).run("users.get_by_id", user_id), f"id {user_id}")


async def get_user_by_username(request: Request) -> Response:
    username = path_text(request, "username", max_length=50)
    return _user_or_404(request, await _db(request).run("users.get_by_username", username), "that username")


async def get_user_by_email(request: Request) -> Response:
    email = nfc(path_text(request, "email", max_length=254))
    return _user_or_404(request, await _db(request).run("users.get_by_email", email), "that email")


async def patch_user(request: Request) -> Response:
    user_id = path_id(request)
    patch = await read_json(request, UserPatch)
    if errors := patch.null_errors():
        raise ValidationFailed(errors)
    versions = conditional.if_match(request)
    db = _db(request)
    key = await idempotency.read(request)
    if key is not None and patch.model_fields_set:
        return await _patch_keyed(request, user_id, (user_id, patch.changes(), versions), key)
    if not patch.model_fields_set:
        # Nothing to change: answer with the row as it is rather than bumping its version.
        row = await db.run("users.get_by_id", user_id)
        if row is not None and versions is not None and row["version"] not in versions:
            raise _changed()
    else:
        # One statement whatever the outcome: updated, changed since If-Match's versions, or missing.
        row = await db.run("users.update", user_id, patch.changes(), versions)
        if row["changed"]:
            raise _changed()
    if row is not None and row["id"] is not None and preferences.minimal(request):
        return _minimal(204, {"ETag": conditional.etag(row["version"])})
    return _user_or_404(request, row, f"id {user_id}")


async def _patch_keyed(
    request: Request, user_id: int, args: tuple[Any, ...], key: idempotency.Key
) -> Response:
    row, recorded = await idempotency.run(_db(request), "users.update_keyed", args, key, _ttl(request))
    if recorded is not None:
        return idempotency.replayed(_patched(request, idempotency.user_from_record(recorded.answer)))
    if row["answer"] is None:
        if row["changed"]:
            raise _changed()
        raise NotFound(f"no user with id {user_id}")
    return _patched(request, idempotency.user_from_record(row["answer"]))


def _patched(request: Request, user: dict[str, Any]) -> Response:
    tag = conditional.etag(user.pop("version"))
    if preferences.minimal(request):
        return _minimal(204, {"ETag": tag})
    return JSONResponse(user, headers={"ETag": tag})


async def delete_user(request: Request) -> Response:
    user_id = path_id(request)
    key = await idempotency.read(request)
    if key is not None:
        args = (user_id, conditional.if_match(request))
        outcome, recorded = await idempotency.run(
            _db(request), "users.delete_keyed", args, key, _ttl(request)
        )
        if recorded is not None:
            return idempotency.replayed(Response(status_code=recorded.status))
    else:
        outcome = await _db(request).run("users.delete", user_id, conditional.if_match(request))
    if outcome["changed"]:
        raise _changed()
    if outcome["id"] is None:
        raise NotFound(f"no user with id {user_id}")
    return Response(status_code=204)


async def auth_lookup(request: Request) -> Response:
    body = await read_json(request, AuthLookup)
    row = await _db(request).run("auth.lookup", body.login)
    if row is None:
        raise NotFound("no user with that login")
    return JSONResponse(dict(row))


_ID = Param(
    name="id",
    location="path",
    required=True,
    description="The user's id.",
    schema={"type": "integer", "format": "int64"},
)
_IF_MATCH = Param(
    name="If-Match",
    location="header",
    description="Apply only if the user is still at one of these ETags (else 412); `*` or absent: always.",
    schema={"type": "string"},
)
_IF_NONE_MATCH = Param(
    name="If-None-Match",
    location="header",
    description="304 with no body if the user's current ETag is among these.",
    schema={"type": "string"},
)
IDEMPOTENCY_KEY = Param(
    name=idempotency.HEADER,
    location="header",
    description=(
        'Retry safely: a quoted string or a bare token, 1 to 255 visible ASCII characters ("8e03978e-..."). '
        "The first request's answer is recorded with its write; a retry with the same key and request gets "
        "it again (Idempotent-Replayed: true) and changes nothing; the same key with another request is 422."
    ),
    # Bare: visible ASCII but " and \; quoted: an RFC 8941 string of visible ASCII (\" and \\ escaped).
    schema={"type": "string", "pattern": r'^(?:[!#-\[\]-~]{1,255}|"(?:[!#-\[\]-~]|\\["\\]){1,255}")$'},
)
REPLAYED = {
    idempotency.REPLAYED: "`true` when the answer is the recorded one of an earlier request with the key."
}
_ETAG = {"ETag": "Version of the user; send it back in If-Match to update or delete safely."}
_USERNAME = Param(
    name="username",
    location="path",
    required=True,
    description="The exact username (case-sensitive).",
    schema={"type": "string", "minLength": 1, "maxLength": 50, "pattern": NO_NUL_PATTERN},
)
_EMAIL = Param(
    name="email",
    location="path",
    required=True,
    description="Matched ignoring case and Unicode form. Percent-encode it: a `/` in the address is `%2F`.",
    schema={"type": "string", "minLength": 1, "maxLength": 254, "pattern": NO_NUL_PATTERN},
    slashes=True,
)

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        method="POST",
        path=PREFIX,
        aliases=(PREFIX + "/",),
        endpoint=create_user,
        operation_id="createUser",
        consistency="write",
        summary="Create a user",
        description=(
            "One INSERT ... RETURNING: 201 with the user and its Location. The username and the email "
            "(compared ignoring case and Unicode form) must be free (409 names the field); unknown "
            "fields are 422."
        ),
        tag="users",
        status=201,
        minimal=201,
        request_model=UserCreate,
        response_model=User,
        scope="users:write",
        response_headers={"Location": "Path of the new user.", **_ETAG, **REPLAYED},
        params=(IDEMPOTENCY_KEY,),
        errors=(400, 409, 413, 415, 422),
    ),
    Operation(
        method="GET",
        path=PREFIX + "/{id}",
        endpoint=get_user,
        operation_id="getUser",
        consistency="read",
        summary="Get a user by id",
        description=(
            "One primary-key lookup. The ETag is the user's version: send it as If-None-Match for a 304."
        ),
        tag="users",
        response_model=User,
        response_headers=_ETAG,
        params=(_ID, _IF_NONE_MATCH),
        scope="users:read",
        errors=(304, 404, 422),
    ),
    Operation(
        method="GET",
        path=PREFIX + "/by_username/{username}",
        endpoint=get_user_by_username,
        operation_id="getUserByUsername",
        consistency="read",
        summary="Get a user by username",
        description=("One unique-index lookup on the exact username; 404 when no user has it."),
        tag="users",
        response_model=User,
        response_headers=_ETAG,
        params=(_USERNAME, _IF_NONE_MATCH),
        scope="users:read",
        errors=(304, 404, 422),
    ),
    Operation(
        method="GET",
        path=PREFIX + "/by_email/{email}",
        endpoint=get_user_by_email,
        operation_id="getUserByEmail",
        consistency="read",
        summary="Get a user by email (case-insensitive)",
        description=(
            "One unique-index lookup; the address is compared ignoring case and Unicode normalization form."
        ),
        tag="users",
        response_model=User,
        response_headers=_ETAG,
        params=(_EMAIL, _IF_NONE_MATCH),
        scope="users:read",
        errors=(304, 404, 422),
    ),
    Operation(
        method="PATCH",
        path=PREFIX + "/{id}",
        endpoint=patch_user,
        operation_id="updateUser",
        consistency="write",
        summary="Change some fields of a user",
        description=(
            "Only the fields sent change, in one UPDATE ... RETURNING. With If-Match the write "
            "happens only if the version still matches (412 otherwise)."
        ),
        tag="users",
        minimal=204,
        request_model=UserPatch,
        response_model=User,
        response_headers={**_ETAG, **REPLAYED},
        params=(_ID, _IF_MATCH, IDEMPOTENCY_KEY),
        scope="users:write",
        errors=(400, 404, 409, 412, 413, 415, 422),
    ),
    Operation(
        method="DELETE",
        path=PREFIX + "/{id}",
        endpoint=delete_user,
        operation_id="deleteUser",
        consistency="write",
        summary="Delete a user",
        description=(
            "One DELETE; 204, or 404 if there was no such user. With If-Match only that version is "
            "deleted (412 otherwise)."
        ),
        tag="users",
        status=204,
        response_headers=REPLAYED,
        params=(_ID, _IF_MATCH, IDEMPOTENCY_KEY),
        scope="users:write",
        errors=(404, 412, 422),
    ),
    Operation(
        method="POST",
        path="/api/v1/auth/lookup",
        endpoint=auth_lookup,
        operation_id="lookupCredentials",
        summary="Stored credentials for a username or email",
        description=(
            "For an authentication service: the password hash and the flags it needs, looked up by "
            "username or by email; the caller verifies the hash. Needs the credentials:read scope."
        ),
        tag="auth",
        request_model=AuthLookup,
        response_model=Credentials,
        scope="credentials:read",
        errors=(400, 404, 413, 415, 422),
    ),
)
