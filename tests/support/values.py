"""Values many tests need, defined once."""

from __future__ import annotations

# A 60-character string shaped like a bcrypt hash: the service stores the caller's hash as given and only
# checks its length, so any such string will do.
HASH = "$2b$12$" + "a" * 53
OTHER_HASH = "$2b$12$" + "b" * 53
