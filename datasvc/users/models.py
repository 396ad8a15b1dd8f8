"""The users resource's request and response shapes; the database re-checks every rule as a constraint."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from datasvc.errors import FieldError
from datasvc.inputs import BIGINT_MAX, NFC, SafeStr

UserStatus = Literal["active", "inactive", "suspended"]

# Deliberately loose (one @, no spaces, a dot in the domain): mailbox rules belong to whoever sends mail.
# Both patterns exclude NUL themselves (see inputs.SafeStr), and are plain `str` so that the OpenAPI
# schema carries them: a pattern layered on SafeStr's validator is enforced but left out of the schema.
# Whitespace is spelled out rather than `\s`, which means three different sets in pydantic's Rust
# engine, in JSON Schema (ECMA-262) and in Python; this set covers all three and PostgreSQL's [:space:].
_SPACE = r"\t\n\v\f\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
_LOCAL = rf"[^@\x00{_SPACE}]+"
EMAIL_PATTERN = rf"^{_LOCAL}@{_LOCAL}\.{_LOCAL}$"
USERNAME_PATTERN = r"^[A-Za-z0-9_-]{3,50}$"

# Stored and returned in NFC; unique and looked up ignoring case and Unicode form (migration 0007).
# NFC last: a BeforeValidator placed before the Field drops the pattern from the OpenAPI schema (it still
# runs first either way, so lengths and the pattern judge the normalized text).
Email = Annotated[str, Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN), NFC]
Username = Annotated[str, Field(min_length=3, max_length=50, pattern=USERNAME_PATTERN)]
PasswordHash = Annotated[SafeStr, Field(min_length=60, max_length=255)]
FullName = Annotated[SafeStr, Field(max_length=100)]
Bio = Annotated[SafeStr, Field(max_length=1000)]


class StrictInput(BaseModel):
    """Unknown fields are refused (no mass assignment) and nothing is coerced (``"1"`` is not ``1``)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    # What a field must be, in words, for its size and form errors (pydantic would print the pattern).
    reasons: ClassVar[dict[str, str]] = {
        "email": "must be an email address: one @, no spaces, a dot in the domain, 3 to 254 characters",
        "username": "must be 3 to 50 characters: letters A-Z or a-z, digits, _ or -",
        "hashed_password": (
            "must be a password hash made by the caller (bcrypt's is 60 characters): 60 to 255 characters"
        ),
    }


class UserCreate(StrictInput):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@example.com",
                    "username": "ada",
                    "hashed_password": "$2b$12$" + "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0",
                    "full_name": "Ada Lovelace",
                }
            ]
        }
    )

    email: Email
    username: Username
    hashed_password: PasswordHash = Field(description="Already hashed by the caller (e.g. bcrypt).")
    full_name: FullName | None = None
    bio: Bio | None = None


NOT_NULLABLE = ("email", "status", "is_verified", "is_admin")


def _absent_is_unchanged(schema: dict[str, Any]) -> None:
    """No ``default`` in a PATCH field's schema: an absent field is left as it is, not set to null (a
    generated client would send every field's default, clearing what the caller did not name)."""
    schema.pop("default", None)


def _without_null(schema: dict[str, Any]) -> None:
    """Leave ``null`` (and the default) out of a field's JSON schema; validation still lets ``null``
    through to `null_errors`."""
    _absent_is_unchanged(schema)
    options = [s for s in schema.pop("anyOf", []) if s != {"type": "null"}]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options


# Optional, but NOT NULL in the database: OpenAPI readers (and schemathesis) are not offered ``null``.
_NOT_NULL: Any = Field(default=None, json_schema_extra=_without_null)
# Nullable: ``null`` clears the field.
_CLEARABLE: Any = Field(default=None, json_schema_extra=_absent_is_unchanged)


class UserPatch(StrictInput):
    """Only the fields present are changed; ``null`` clears ``full_name`` or ``bio``."""

    email: Email | None = _NOT_NULL
    full_name: FullName | None = _CLEARABLE
    bio: Bio | None = _CLEARABLE
    status: UserStatus | None = _NOT_NULL
    is_verified: StrictBool | None = _NOT_NULL
    is_admin: StrictBool | None = _NOT_NULL

    def null_errors(self) -> list[FieldError]:
        """``null`` sent for a field the database keeps NOT NULL."""
        return [
            FieldError(f"body.{name}", "cannot be null")
            for name in NOT_NULLABLE
            if name in self.model_fields_set and getattr(self, name) is None
        ]

    def changes(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in sorted(self.model_fields_set)}


class AuthLookup(StrictInput):
    login: Annotated[SafeStr, Field(min_length=1, max_length=254, description="A username or an email."), NFC]


class User(BaseModel):
    """A user as every endpoint but ``auth/lookup`` returns it: never the password hash."""

    id: int
    email: str
    username: str
    full_name: str | None
    bio: str | None
    status: UserStatus
    is_verified: bool
    is_admin: bool
    created_at: datetime
    updated_at: datetime


class Credentials(BaseModel):
    """What a caller needs to verify a login itself; the only shape that carries ``hashed_password``."""

    id: int
    username: str
    email: str
    hashed_password: str
    status: UserStatus
    is_verified: bool


BATCH_MAX = 1000


# A JSON number written with a fraction or an exponent arrives as a float, exact only up to 2**53.
FLOAT_EXACT = 2**53


def _whole_number(value: Any) -> Any:
    """2.0 is 2 (JSON Schema's integer admits it); anything else but a float is left to the strict check."""
    if type(value) is not float:
        return value
    if not value.is_integer():
        raise PydanticCustomError("whole_number", "must be a whole number")
    if abs(value) >= FLOAT_EXACT:
        # 9007199254740993.0 parses as ...992.0: taking it would fetch another user than the one asked.
        raise PydanticCustomError(
            "whole_number_inexact",
            "must be a plain integer: from 2**53 on, a number written with a fraction or exponent is rounded",
        )
    return int(value)


UserId = Annotated[int, Field(ge=-BIGINT_MAX - 1, le=BIGINT_MAX)]
_LENIENT_IDS = TypeAdapter(
    list[Annotated[int, Field(ge=-BIGINT_MAX - 1, le=BIGINT_MAX), BeforeValidator(_whole_number)]],
    config=ConfigDict(strict=True),
)


def _ids(value: Any, strict: ValidatorFunctionWrapHandler) -> Any:
    """Integers validate in pydantic's core, with no Python call per id (a batch's bulk of work before
    the database); only a list the strict check refuses is validated again item by item, taking whole
    numbers written as floats, so its errors name each item as the strict ones do."""
    try:
        return strict(value)
    except ValidationError:
        return _LENIENT_IDS.validate_python(value)


# A batch's ids: whole numbers (bigint), also when written with a fraction up to 2**53; never strings.
BatchIds = Annotated[list[UserId], WrapValidator(_ids)]
# Keys of a batchGet: any text the lookups by username and email accept; a key no user has is `missing`.
UsernameKey = Annotated[SafeStr, Field(min_length=1, max_length=50)]
EmailKey = Annotated[SafeStr, Field(min_length=1, max_length=254), NFC]


def _batch_of(what: str) -> Any:
    return Field(default=None, min_length=1, max_length=BATCH_MAX, description=f"1 to {BATCH_MAX} {what}.")


def _exactly_one_key(schema: dict[str, Any]) -> None:
    """The schema says "exactly one of" too, so a client or a generator sends what the service takes:
    one property, and an absent key is left out rather than sent as null."""
    schema["examples"] = [{"ids": [1, 2, 3]}, {"emails": ["ada@example.com"]}]
    schema["minProperties"] = schema["maxProperties"] = 1
    for prop in schema["properties"].values():
        (array,) = [s for s in prop.pop("anyOf") if s.get("type") == "array"]
        prop.update(array)
        prop.pop("default", None)


class BatchGet(StrictInput):
    """Exactly one of ``ids``, ``usernames``, ``emails``: the users to fetch, answered in this order."""

    model_config = ConfigDict(json_schema_extra=_exactly_one_key)
    reasons: ClassVar[dict[str, str]] = {
        key: f"must hold 1 to {BATCH_MAX} entries (the batch limit)" for key in ("ids", "usernames", "emails")
    }

    ids: BatchIds | None = _batch_of("user ids")
    usernames: list[UsernameKey] | None = _batch_of("usernames (exact)")
    emails: list[EmailKey] | None = _batch_of("emails (matched ignoring case and Unicode form)")

    @model_validator(mode="after")
    def _exactly_one(self) -> BatchGet:
        given = [name for name in ("ids", "usernames", "emails") if name in self.model_fields_set]
        if len(given) != 1 or getattr(self, given[0]) is None:
            raise ValueError("must hold exactly one of ids, usernames or emails")
        return self

    def keys(self) -> tuple[str, list[Any]]:
        """Which kind of key, and the keys once each in the order asked."""
        for name in ("ids", "usernames", "emails"):
            values = getattr(self, name)
            if values is not None:
                return name, list(dict.fromkeys(values))
        raise AssertionError("validated: exactly one kind of key")


class BatchGetResult(BaseModel):
    """The users found, in the order of the request (each once), and the keys no user has."""

    items: list[User]
    missing: list[int | str] = Field(description="The keys of the request that match no user, in its order.")


class BatchCreate(StrictInput):
    """The users to create, all or none; the answer lists them in this order."""

    reasons: ClassVar[dict[str, str]] = {"users": f"must hold 1 to {BATCH_MAX} users (the batch limit)"}

    users: list[UserCreate] = Field(
        min_length=1, max_length=BATCH_MAX, description=f"1 to {BATCH_MAX} users."
    )


class BatchCreateResult(BaseModel):
    """The users created, in the order of the request."""

    items: list[User]
