"""The users resource's request and response shapes; the database re-checks every rule as a constraint."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from datasvc.errors import FieldError
from datasvc.inputs import SafeStr

UserStatus = Literal["active", "inactive", "suspended"]

# Deliberately loose (one @, no spaces, a dot in the domain): mailbox rules belong to whoever sends mail.
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
USERNAME_PATTERN = r"^[A-Za-z0-9_-]{3,50}$"

Email = Annotated[SafeStr, Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)]
Username = Annotated[SafeStr, Field(min_length=3, max_length=50, pattern=USERNAME_PATTERN)]
PasswordHash = Annotated[SafeStr, Field(min_length=60, max_length=255)]
FullName = Annotated[SafeStr, Field(max_length=100)]
Bio = Annotated[SafeStr, Field(max_length=1000)]


class StrictInput(BaseModel):
    """Unknown fields are refused (no mass assignment) and nothing is coerced (``"1"`` is not ``1``)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class UserCreate(StrictInput):
    email: Email
    username: Username
    hashed_password: PasswordHash = Field(description="Already hashed by the caller (e.g. bcrypt).")
    full_name: FullName | None = None
    bio: Bio | None = None


NOT_NULLABLE = ("email", "status", "is_verified", "is_admin")


class UserPatch(StrictInput):
    """Only the fields present are changed; ``null`` clears ``full_name`` or ``bio``."""

    email: Email | None = None
    full_name: FullName | None = None
    bio: Bio | None = None
    status: UserStatus | None = None
    is_verified: StrictBool | None = None
    is_admin: StrictBool | None = None

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
    login: Annotated[SafeStr, Field(min_length=1, max_length=254, description="A username or an email.")]


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
