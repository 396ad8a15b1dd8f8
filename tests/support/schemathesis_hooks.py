"""schemathesis hooks for tests/test_schemathesis.py (loaded through ``SCHEMATHESIS_HOOKS``).

Two failure kinds are expected by design and filtered, precisely: a generated Idempotency-Key that
repeats with another request is refused (422 `idempotency-key-reused`); and a listing ``cursor`` is an
HMAC-signed token that only the server can make, so a generated one is refused (422 on ``query.cursor``, or on
``query.offset`` for "cannot be combined with cursor"), although any string is schema-valid. Every
other failure of every check still fails the run.
"""

from __future__ import annotations

from typing import Any

import schemathesis


@schemathesis.hook
def filter_failure(context: Any, failure: Any, case: Any, response: Any) -> bool:
    """False (drop) only for a generated cursor the listing refused, or a generated Idempotency-Key
    sent again with another request (422 `idempotency-key-reused`, by design); True for anything else."""
    if response.status_code == 422 and _problem_type(response).endswith(":idempotency-key-reused"):
        return False
    # A body over DATASVC_MAX_BODY_BYTES is refused with 413 before it is read, which schemathesis's
    # "schema-violating request accepted" check does not count as a refusal.
    if response.status_code == 413 and _problem_type(response).endswith(":payload-too-large"):
        return False
    if case.method.upper() != "GET" or not case.path.rstrip("/").endswith("/api/v1/users"):
        return True
    if not (case.query or {}).get("cursor") or response.status_code != 422:
        return True
    try:
        errors = response.json().get("errors", [])
    except ValueError:
        return True
    fields = {e.get("field") for e in errors}
    cursor_only = fields <= {"query.cursor"} or (
        fields == {"query.offset"} and all("cursor" in e.get("reason", "") for e in errors)
    )
    return not cursor_only


def _problem_type(response: Any) -> str:
    try:
        return str(response.json().get("type", ""))
    except ValueError:
        return ""
