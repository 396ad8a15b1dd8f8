"""Every setting the service reads, from the environment, once, typed.

The README's configuration table is written from ``FIELDS``; `datasvc serve` logs the effective values
at start-up with secrets redacted.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The default DATASVC_CALLER_MAX_IN_FLIGHT is DATASVC_MAX_IN_FLIGHT divided by this.
CALLER_SHARE = 4


class SettingsError(ValueError):
    """An environment variable holds a value the service cannot use."""


def _positive_float(raw: str) -> float:
    value = float(raw)
    if not value > 0:
        raise ValueError("must be > 0")
    return value


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise ValueError("must be >= 1")
    return value


def _non_negative_int(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _cursor_secret(raw: str) -> str:
    if len(raw.encode()) < 32:
        raise ValueError("must be at least 32 bytes (e.g. `openssl rand -base64 32`)")
    return raw


def _plan_cache_mode(raw: str) -> str:
    if raw not in {"auto", "force_custom_plan", "force_generic_plan"}:
        raise ValueError("must be auto, force_custom_plan or force_generic_plan")
    return raw


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ValueError("must be true or false")


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The service's configuration; build it with `Settings.from_env`."""

    database_url: str | None = None
    pool_min_size: int = 2
    pool_max_size: int = 10
    acquire_timeout: float = 2.0
    connect_timeout: float = 5.0
    statement_timeout: float = 5.0
    lock_timeout: float = 2.0
    transaction_retries: int = 3
    max_in_flight: int = 100
    application_name: str = "datasvc"
    max_body_bytes: int = 65536
    max_header_bytes: int = 16384
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    shutdown_timeout: float = 10.0
    sql_dir: Path = PROJECT_ROOT / "sql"
    migrations_dir: Path = PROJECT_ROOT / "migrations"
    data_dir: Path = PROJECT_ROOT / ".datasvc"
    embedded_port: int = 54329
    log_level: str = "info"
    access_log: bool = True
    auth: bool = True
    auth_tokens: str = ""
    auth_tokens_file: Path | None = None
    auth_reload_seconds: float = 5.0
    caller_max_in_flight: int | None = None
    list_max_offset: int = 100_000
    cursor_secret: str | None = None
    plan_cache_mode: str = "force_custom_plan"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read every ``DATASVC_*`` variable (and ``DATABASE_URL``); unknown values fail loudly."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for spec in FIELDS:
            raw = env.get(spec.env)
            if raw is None or raw == "":
                continue
            try:
                values[spec.attr] = spec.parse(raw)
            except ValueError as exc:
                raise SettingsError(f"{spec.env}={raw!r}: {exc}") from None
        settings = cls(**values)
        if settings.pool_min_size > settings.pool_max_size:
            raise SettingsError("DATASVC_POOL_MIN must not exceed DATASVC_POOL_MAX")
        return settings

    @property
    def caller_limit(self) -> int:
        """Requests one authenticated caller may have in flight per worker (0: no per-caller bound)."""
        if self.caller_max_in_flight is not None:
            return self.caller_max_in_flight
        # A quarter of the worker's slots: four callers at full tilt fill it, and one caller in a loop
        # leaves three quarters to everyone else (measured: docs/security.md, Fair share).
        return max(1, self.max_in_flight // CALLER_SHARE) if self.max_in_flight else 0

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def redacted(self) -> dict[str, Any]:
        """The effective configuration, safe to log: passwords, the cursor secret and token hashes masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "database_url" and value:
                value = redact_url(value)
            elif f.name == "cursor_secret" and value:
                value = "***"
            elif f.name == "auth_tokens" and value:
                # Hashes of tokens, not tokens; still nothing a log reader needs beyond their number.
                value = (
                    f"*** ({len([e for e in value.replace(';', chr(10)).splitlines() if e.strip()])} entries)"
                )
            out[f.name] = str(value) if isinstance(value, Path) else value
        return out


def redact_url(url: str) -> str:
    """Mask the password of a libpq URL (``postgresql://user:secret@host`` → ``user:***@host``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    userinfo, _, hostpart = rest.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if has_password else ''}@{hostpart}"


@dataclass(frozen=True)
class FieldSpec:
    attr: str
    env: str
    parse: Callable[[str], Any]
    doc: str


FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec(
        "database_url",
        "DATABASE_URL",
        str,
        "libpq URL of the database. Unset: `datasvc serve` starts a private PostgreSQL.",
    ),
    FieldSpec("pool_min_size", "DATASVC_POOL_MIN", _non_negative_int, "Connections the pool keeps open."),
    FieldSpec("pool_max_size", "DATASVC_POOL_MAX", _positive_int, "Most connections the pool opens."),
    FieldSpec(
        "acquire_timeout",
        "DATASVC_ACQUIRE_TIMEOUT",
        _positive_float,
        "Seconds a request waits for a pooled connection before 503.",
    ),
    FieldSpec(
        "connect_timeout",
        "DATASVC_CONNECT_TIMEOUT",
        _positive_float,
        "Seconds to open one database connection.",
    ),
    FieldSpec(
        "statement_timeout",
        "DATASVC_STATEMENT_TIMEOUT",
        _positive_float,
        "Seconds a statement may run (server `statement_timeout`); then 504.",
    ),
    FieldSpec(
        "lock_timeout",
        "DATASVC_LOCK_TIMEOUT",
        _positive_float,
        "Seconds a statement may wait for a row or table lock (server `lock_timeout`).",
    ),
    FieldSpec(
        "transaction_retries",
        "DATASVC_TRANSACTION_RETRIES",
        _non_negative_int,
        "Retries of a transaction PostgreSQL rolled back (serialization failure, deadlock); then 503.",
    ),
    FieldSpec(
        "max_in_flight",
        "DATASVC_MAX_IN_FLIGHT",
        _non_negative_int,
        "Requests served at once per worker; more are shed at once as 503 with `Retry-After`. 0: no limit.",
    ),
    FieldSpec(
        "application_name",
        "DATASVC_APPLICATION_NAME",
        str,
        "`application_name` of every connection, as seen in `pg_stat_activity`.",
    ),
    FieldSpec(
        "max_body_bytes",
        "DATASVC_MAX_BODY_BYTES",
        _positive_int,
        "Largest request body accepted; larger is 413.",
    ),
    FieldSpec(
        "max_header_bytes",
        "DATASVC_MAX_HEADER_BYTES",
        _positive_int,
        "Largest request line plus headers accepted; larger is 431 and the connection is closed.",
    ),
    FieldSpec("host", "DATASVC_HOST", str, "Address `datasvc serve` binds."),
    FieldSpec("port", "DATASVC_PORT", _positive_int, "Port `datasvc serve` binds."),
    FieldSpec("workers", "DATASVC_WORKERS", _positive_int, "Worker processes of `datasvc serve`."),
    FieldSpec(
        "shutdown_timeout",
        "DATASVC_SHUTDOWN_TIMEOUT",
        _positive_float,
        "Seconds in-flight requests get to finish on SIGTERM; also bounds closing the pool.",
    ),
    FieldSpec("sql_dir", "DATASVC_SQL_DIR", Path, "Folder of the `.sql` statement files."),
    FieldSpec("migrations_dir", "DATASVC_MIGRATIONS_DIR", Path, "Folder of the yoyo migrations."),
    FieldSpec(
        "data_dir",
        "DATASVC_DATA_DIR",
        Path,
        "Where the embedded PostgreSQL keeps its data when `DATABASE_URL` is unset.",
    ),
    FieldSpec(
        "embedded_port",
        "DATASVC_EMBEDDED_PORT",
        _positive_int,
        "Port (127.0.0.1) of the embedded PostgreSQL when `DATABASE_URL` is unset.",
    ),
    FieldSpec("log_level", "DATASVC_LOG_LEVEL", str, "debug, info, warning or error."),
    FieldSpec("access_log", "DATASVC_ACCESS_LOG", _bool, "One JSON line per request on stdout."),
    FieldSpec(
        "auth",
        "DATASVC_AUTH",
        _bool,
        "`off` serves every caller without a token, on any address, with a warning at start-up (only "
        "with no token configured). `on`: tokens as configured; with none, `datasvc serve` runs open on "
        "loopback only and refuses to start on any other address.",
    ),
    FieldSpec(
        "auth_tokens",
        "DATASVC_AUTH_TOKENS",
        str,
        "Bearer tokens as `caller scopes sha256hex` entries separated by `;` (see Authentication). "
        "Unset with no file: open mode.",
    ),
    FieldSpec(
        "auth_tokens_file",
        "DATASVC_AUTH_TOKENS_FILE",
        Path,
        "File of `caller scopes sha256hex` lines, added to `DATASVC_AUTH_TOKENS`; re-read when it "
        "changes (a file that does not parse keeps the last good set). Set, even empty: tokens required.",
    ),
    FieldSpec(
        "auth_reload_seconds",
        "DATASVC_AUTH_RELOAD_SECONDS",
        _positive_float,
        "How often each worker checks `DATASVC_AUTH_TOKENS_FILE` for a change: a removed token is refused "
        "within this time.",
    ),
    FieldSpec(
        "caller_max_in_flight",
        "DATASVC_CALLER_MAX_IN_FLIGHT",
        _non_negative_int,
        "Requests one authenticated caller may have in flight per worker; more are 429 with `Retry-After`. "
        "Unset: a quarter of `DATASVC_MAX_IN_FLIGHT`. 0: no per-caller limit.",
    ),
    FieldSpec(
        "list_max_offset",
        "DATASVC_LIST_MAX_OFFSET",
        _non_negative_int,
        "Largest `offset` GET /api/v1/users accepts (larger is 422); deeper pages use the cursors.",
    ),
    FieldSpec(
        "cursor_secret",
        "DATASVC_CURSOR_SECRET",
        _cursor_secret,
        "HMAC key (32+ bytes) signing listing cursors. Unset: random per `datasvc serve` run, shared by "
        "its workers; set it when several instances serve one API.",
    ),
    FieldSpec(
        "plan_cache_mode",
        "DATASVC_PLAN_CACHE_MODE",
        _plan_cache_mode,
        "Server `plan_cache_mode` of the pool's sessions: `force_custom_plan` plans each listing for its "
        "filters (see Listing).",
    ),
)
