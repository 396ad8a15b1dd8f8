"""Turning request bodies and parameters into validated models, or a 4xx naming each bad field."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, ValidationError
from starlette.requests import Request

from datasvc.errors import BadRequest, FieldError, UnsupportedMediaType, ValidationFailed

M = TypeVar("M", bound=BaseModel)

BIGINT_MAX = 2**63 - 1
_JSON_MEDIA = re.compile(r"^application/(?:[\w.+-]+\+)?json\s*(?:;.*)?$", re.IGNORECASE)


def _no_nul(value: str) -> str:
    # PostgreSQL text cannot hold U+0000; refuse it here with a field name rather than as a driver error.
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    return value


# The pattern only tells OpenAPI readers (and schemathesis) that NUL is refused; the validator refuses
# it with a clear reason. A type with a pattern of its own must exclude NUL in it instead of building
# on SafeStr: the outer pattern would hide this one from the schema.
NO_NUL_PATTERN = r"^[^\x00]*$"
SafeStr = Annotated[str, AfterValidator(_no_nul), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})]


def nfc(value: str) -> str:
    """One spelling for one text: ``é`` sent precomposed or as ``e`` + U+0301 becomes the same string."""
    return unicodedata.normalize("NFC", value)


def _nfc_if_text(value: object) -> object:
    # Before the type check, so that lengths and patterns judge the normalized text; anything not a
    # string is left for the (strict) type check to refuse.
    return nfc(value) if isinstance(value, str) else value


# Text compared with what is stored (emails, logins, search terms) is normalized to NFC on the way in.
NFC = BeforeValidator(_nfc_if_text)


# Digits, with a minus allowed so that "-1" is told the bound ("must be at least 0") rather than the form.
_DIGITS = re.compile(r"^-?[0-9]{1,20}$")


def _decimal(value: object) -> object:
    # Query values are text; pydantic's lax int would read "5_0" as 50 and take "+5", "5.0" and " 5".
    if isinstance(value, str):
        if not _DIGITS.match(value):
            raise ValueError("must be an integer in plain decimal digits")
        return int(value)
    return value


def _true_false(value: object) -> object:
    # pydantic's lax bool takes yes/no, on/off, 1/0, t/f; the contract says true or false.
    if isinstance(value, str):
        if value not in ("true", "false"):
            raise ValueError("must be true or false")
        return value == "true"
    return value


# A query-string integer: plain decimal digits only (bounds come from the field's own ge/le).
QueryInt = Annotated[int, BeforeValidator(_decimal)]
# A query-string boolean: exactly `true` or `false`.
QueryBool = Annotated[bool, BeforeValidator(_true_false)]

# Size and form errors a model may explain in its own words, per field (``StrictInput.reasons``).
_FORM_ERRORS = frozenset(
    {"string_too_short", "string_too_long", "too_short", "too_long", "string_pattern_mismatch"}
)


def _reason(err: Any) -> str:
    """A reason written for people, from pydantic's error type; never the input nor a pattern."""
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind in ("string_too_short", "too_short"):
        low = ctx.get("min_length", 1)
        return "must not be empty" if low <= 1 else f"must be at least {low} characters"
    if kind in ("string_too_long", "too_long"):
        return f"must be at most {ctx.get('max_length')} characters"
    reasons = {
        "extra_forbidden": "unknown field",
        "missing": "is required",
        "string_pattern_mismatch": "is not in the expected form",
        "string_type": "must be a string",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer in plain decimal digits",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
    }
    if kind in reasons:
        return reasons[kind]
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind == "literal_error":
        return f"must be one of {ctx['expected']}"
    message: str = err["msg"]
    return message.removeprefix("Value error, ")


def field_errors(
    exc: ValidationError, location: str, reasons: Mapping[str, str] | None = None
) -> list[FieldError]:
    """Pydantic's errors as ``location.field: reason``, without echoing the input back.

    ``reasons`` words a field's size and form errors (what an email or a password hash must be).
    """
    out = []
    for err in exc.errors(include_input=False, include_url=False, include_context=True):
        path = ".".join(str(p) for p in err["loc"])
        field = f"{location}.{path}" if path else location
        reason = _reason(err)
        if reasons and err["type"] in _FORM_ERRORS and len(err["loc"]) == 1 and path in reasons:
            reason = reasons[path]
        out.append(FieldError(field, reason))
    return out


async def read_json(request: Request, model: type[M]) -> M:
    """Parse and validate a JSON body (415 for another media type, 400 if malformed, 422 if invalid)."""
    content_type = header(request, b"content-type") or ""
    if not _JSON_MEDIA.match(content_type):
        raise UnsupportedMediaType("send the body as application/json")
    raw = await request.body()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BadRequest("request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(field_errors(exc, "body", getattr(model, "reasons", None))) from None


def read_query(request: Request, model: type[M]) -> M:
    """Validate the query string into ``model``, or a 422 naming every bad or repeated ``query.*``."""
    query = request.query_params
    repeated = sorted({k for k in query if len(query.getlist(k)) > 1})
    if repeated:
        raise ValidationFailed([FieldError(f"query.{k}", "given more than once") for k in repeated])
    try:
        return model.model_validate(dict(query))
    except ValidationError as exc:
        raise ValidationFailed(field_errors(exc, "query")) from None


def header(request: Request, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), from the raw list: no `Headers` object built."""
    headers: list[tuple[bytes, bytes]] = request.scope["headers"]
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


def path_id(request: Request, name: str = "id") -> int:
    """A bigint path parameter; anything else is 422 before the database is asked."""
    raw: str = request.path_params[name]
    if not raw.isascii() or not raw.lstrip("-").isdigit() or len(raw) > 20:
        raise ValidationFailed([FieldError(f"path.{name}", "must be an integer")])
    value = int(raw)
    if not -BIGINT_MAX - 1 <= value <= BIGINT_MAX:
        raise ValidationFailed([FieldError(f"path.{name}", "must fit in a signed 64-bit integer")])
    return value


def path_text(request: Request, name: str, *, max_length: int) -> str:
    raw: str = request.path_params[name]
    if "\x00" in raw:
        raise ValidationFailed([FieldError(f"path.{name}", "must not contain NUL characters")])
    if not 1 <= len(raw) <= max_length:
        raise ValidationFailed([FieldError(f"path.{name}", f"must be 1 to {max_length} characters")])
    return raw
